/* IBRNet's aggregator in C for the CPU (float32): the whole forward pass for rendering, and the per-view
   layers' forward and backward passes for training.

   ibrnet/aggregator.py computes the per-view layers on (V, C, P) tensors layer by layer, streaming every
   per-view activation through memory; this computes them for TILE samples at a time, all layers in a row,
   while the tile's activations (a few tens of KB per view) stay in the core's caches, then runs the ray
   transformer and the density head ray by ray. Same math as IBRNetAggregator; the only numerical
   difference is exp (a Cephes polynomial, within a few float32 ulp), used by ELU, sigmoid, the view
   weights and both softmaxes.

   Inputs, view-major with P = R·S samples (R rays of S samples, ray-major): feat_in (V, C, P) = source
   colour (3) ++ feature (C - 3), ray_diff (V, 4, P), mask (V, P) in {0, 1}; params: the aggregator's
   weights packed by ibrnet/aggregator_native.py (order in `packed_parameters`); position (S, 16): the
   sample-index encoding. Outputs, sample-major: rgb (P, 3), the softmax blend of the source colours, and
   sigma (P), the density. Training (ibrnet_per_view_forward / _backward, at the end) stops at geometry_fc's
   input (P, 65), which PyTorch takes from there. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TILE 32

typedef union { float f; uint32_t u; } bits32;  /* unsigned: shifts and wrap-around are defined */

enum activation { NONE, ELU, SIGMOID };

/* exp(x) for x <= 88.3 in float32 (larger x give garbage: callers clamp or discard them): x = n ln2 + r
   with n = round(x / ln2) (adding 1.5·2^23 leaves the integer n in the low mantissa bits), exp(r) by
   the Cephes expf polynomial (evaluated in Estrin's scheme: shorter dependency chains), 2^n from the
   exponent bits. Branch-free so that loops over it vectorise; NaN stays NaN; below -87.3 it is exp(-87.3). */
static inline float exp_up_to_88(float x) {
    x = x < -87.3f ? -87.3f : x;
    bits32 shifted = {.f = x * 1.44269504088896341f + 12582912.0f};
    float n = shifted.f - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float r2 = r * r;
    float high = 1.9875691500e-4f * r + 1.3981999507e-3f;
    float middle = 8.3334519073e-3f * r + 4.1665795894e-2f;
    float low = 1.6666665459e-1f * r + 5.0000001201e-1f;
    float p = ((high * r2 + middle) * r2 + low) * r2 + r + 1.0f;
    bits32 scale = {.u = (shifted.u - 0x4B400000u + 127u) << 23};
    return p * scale.f;
}

static inline float fast_exp(float x) { return exp_up_to_88(x > 88.3f ? 88.3f : x); }

/* Activations in place over n contiguous floats: separate loops without branches, so they vectorise. */
static void elu_in_place(float *x, int n) {  /* alpha = 1, as the original */
    for (int i = 0; i < n; ++i) {
        const float negative = exp_up_to_88(x[i]) - 1.0f;  /* for every element (no branch), kept if x <= 0 */
        x[i] = x[i] > 0.0f ? x[i] : negative;
    }
}

static void sigmoid_in_place(float *x, int n) {
    for (int i = 0; i < n; ++i) x[i] = 1.0f / (1.0f + fast_exp(-x[i]));
}

static void activate(float *x, int n, int act) {
    if (act == ELU) elu_in_place(x, n);
    else if (act == SIGMOID) sigmoid_in_place(x, n);
}

/* Eight floats; GCC/Clang vector extension (AVX where compiled with it). Unaligned loads/stores. */
typedef float vec8 __attribute__((vector_size(32)));
typedef float vec8_unaligned __attribute__((vector_size(32), aligned(4)));
#define LANES (TILE / 8)

static inline vec8 load8(const float *p) { return *(const vec8_unaligned *)p; }
static inline void store8(float *p, vec8 v) { *(vec8_unaligned *)p = v; }
static inline vec8 broadcast8(float x) { return (vec8){x, x, x, x, x, x, x, x}; }

/* out (O, TILE) = act(init + bias + W[:, :K] in), W row-major with row stride ldw, in (K, TILE).
   init (O, TILE) or NULL, bias (O) or NULL; out may alias init. Two output rows at a time: eight
   accumulator vectors in registers hide the FMA latency. */
static void dense(const float *W, int ldw, const float *bias, const float *init, int O, int K,
                  const float *in, float *out, int act) {
    for (int o = 0; o < O; o += 2) {
        const int pair = o + 1 < O;
        const float *w0 = W + (size_t)o * ldw, *w1 = pair ? w0 + ldw : w0;
        vec8 a0[LANES], a1[LANES];
        const float b0 = bias ? bias[o] : 0.0f, b1 = bias && pair ? bias[o + 1] : 0.0f;
        for (int j = 0; j < LANES; ++j) {
            a0[j] = broadcast8(b0);
            a1[j] = broadcast8(b1);
            if (init) {
                a0[j] += load8(init + (size_t)o * TILE + 8 * j);
                if (pair) a1[j] += load8(init + (size_t)(o + 1) * TILE + 8 * j);
            }
        }
        for (int k = 0; k < K; ++k) {
            const float *x = in + (size_t)k * TILE;
            const vec8 c0 = broadcast8(w0[k]), c1 = broadcast8(w1[k]);
            for (int j = 0; j < LANES; ++j) {
                const vec8 xj = load8(x + 8 * j);
                a0[j] += c0 * xj;
                a1[j] += c1 * xj;
            }
        }
        for (int j = 0; j < LANES; ++j) {
            store8(out + (size_t)o * TILE + 8 * j, a0[j]);
            if (pair) store8(out + (size_t)(o + 1) * TILE + 8 * j, a1[j]);
        }
    }
    activate(out, O * TILE, act);
}

/* mean[c] = Σ_v w_v x_v[c], var[c] = Σ_v w_v (x_v[c] − mean[c])²; x (V, C, TILE), w (V, TILE). */
static void weighted_mean_variance(const float *x, const float *w, int V, int C, float *mean, float *var) {
    for (int c = 0; c < C; ++c) {
        float m[TILE] = {0}, s[TILE] = {0};
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) m[t] += w[v * TILE + t] * x[(v * C + c) * TILE + t];
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) {
                float d = x[(v * C + c) * TILE + t] - m[t];
                s[t] += w[v * TILE + t] * d * d;
            }
        memcpy(mean + c * TILE, m, sizeof m);
        memcpy(var + c * TILE, s, sizeof s);
    }
}

/* w_v /= Σ_u w_u + 1e-8 over the views; w (V, TILE); the sums Σ_u w_u into total (TILE) unless NULL. */
static void normalise_over_views(float *w, int V, float *total_out) {
    float total[TILE] = {0};
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) total[t] += w[v * TILE + t];
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) w[v * TILE + t] /= total[t] + 1e-8f;
    if (total_out) memcpy(total_out, total, sizeof total);
}

/* Copies rows (rows, TILE) of a (rows, P) array from column `start`, n valid columns, zero padding. */
static void gather_rows(float *tile, const float *source, int rows, int64_t P, int64_t start, int n) {
    for (int c = 0; c < rows; ++c) {
        memcpy(tile + c * TILE, source + c * P + start, n * sizeof(float));
        memset(tile + c * TILE + n, 0, (TILE - n) * sizeof(float));
    }
}

/* Copies (rows, TILE) into columns start..start+n of a (rows, P) array. */
static void scatter_rows(const float *tile, float *target, int rows, int64_t P, int64_t start, int n) {
    for (int c = 0; c < rows; ++c) memcpy(target + c * P + start, tile + c * TILE, n * sizeof(float));
}

/* Sample-major (P, rows) from sample `start` on into a (rows, TILE) tile, zero padding. */
static void gather_columns(float *tile, const float *source, int rows, int64_t start, int n) {
    for (int t = 0; t < TILE; ++t)
        for (int c = 0; c < rows; ++c) tile[c * TILE + t] = t < n ? source[(start + t) * rows + c] : 0.0f;
}

/* A (rows, TILE) tile's first n columns into rows start..start+n of a sample-major (P, rows) array. */
static void scatter_columns(const float *tile, float *target, int rows, int64_t start, int n) {
    for (int t = 0; t < n; ++t)
        for (int c = 0; c < rows; ++c) target[(start + t) * rows + c] = tile[c * TILE + t];
}

/* Where the per-view inputs of the samples come from: either arrays made by ibrnet/projector.py
   (feat_in (V, C, P), ray_diff (V, 4, P), mask (V, P)), or world points (P, 3) projected here into the
   source views, with the projector's math (see project_tile). */
struct sample_views {
    const float *feat_in, *ray_diff, *mask, *colours;  /* colours (V, 3, P): or NULL, then feat_in's first 3 */
    const float *points, *target_center, *K, *cam_from_world, *source_centers, *images, *features;
    int64_t H, W, h, w;
};

/* The corners grid_sample(align_corners=True, zero padding) reads at grid coordinates (gx, gy) of a
   height × width image: their pixel indices y·width + x and bilinear weights, corners outside the image left
   out. Returns how many there are (0 when the point lies a pixel or more outside, or is NaN). */
static int bilinear_corners(int64_t height, int64_t width, float gx, float gy, int64_t pixel[4], float weight[4]) {
    const float ix = (gx + 1.0f) / 2.0f * (float)(width - 1), iy = (gy + 1.0f) / 2.0f * (float)(height - 1);
    if (!(ix > -1.0f && ix < (float)width && iy > -1.0f && iy < (float)height)) return 0;  /* NaN too */
    const float x0 = __builtin_floorf(ix), y0 = __builtin_floorf(iy);
    const float corner_x[4] = {x0, x0 + 1.0f, x0, x0 + 1.0f}, corner_y[4] = {y0, y0, y0 + 1.0f, y0 + 1.0f};
    const float corner_weight[4] = {(x0 + 1.0f - ix) * (y0 + 1.0f - iy), (ix - x0) * (y0 + 1.0f - iy),
                                    (x0 + 1.0f - ix) * (iy - y0), (ix - x0) * (iy - y0)};
    int count = 0;
    for (int corner = 0; corner < 4; ++corner) {
        const int64_t x = (int64_t)corner_x[corner], y = (int64_t)corner_y[corner];
        if (x < 0 || x >= width || y < 0 || y >= height) continue;
        pixel[count] = y * width + x;
        weight[count++] = corner_weight[corner];
    }
    return count;
}

/* grid_sample(align_corners=True, zero padding) at grid coordinates (gx, gy) of one channel-major image
   (channels, height, width) into out[c * TILE] (channel stride TILE), or of a channels-last one
   (height, width, channels) when channels_last. Corners outside the image contribute nothing. */
static void bilinear(const float *image, int64_t height, int64_t width, int channels, int channels_last,
                     float gx, float gy, float *out) {
    int64_t pixel[4];
    float weight[4], sum[channels];
    for (int c = 0; c < channels; ++c) sum[c] = 0.0f;
    const int corners = bilinear_corners(height, width, gx, gy, pixel, weight);
    for (int i = 0; i < corners; ++i) {
        if (channels_last) {
            const float *value = image + pixel[i] * channels;
            for (int c = 0; c < channels; ++c) sum[c] += weight[i] * value[c];
        } else {
            for (int c = 0; c < channels; ++c) sum[c] += weight[i] * image[c * height * width + pixel[i]];
        }
    }
    for (int c = 0; c < channels; ++c) out[c * TILE] = sum[c];
}

/* The backward pass of bilinear() on a channels-last map (height, width, channels): adds each corner's weight
   times grad[c * TILE] (channel stride TILE) to that corner's pixel, as grid_sample's backward for its input. */
static void bilinear_backward(float *map, int64_t height, int64_t width, int channels, float gx, float gy,
                              const float *grad) {
    int64_t pixel[4];
    float weight[4];
    const int corners = bilinear_corners(height, width, gx, gy, pixel, weight);
    for (int i = 0; i < corners; ++i) {
        float *value = map + pixel[i] * channels;
        for (int c = 0; c < channels; ++c) value[c] += weight[i] * grad[c * TILE];
    }
}

/* The projector's math (ibrnet/projector.py) for the tile's samples in view v: camera point, pixel
   (depth clamped to 1e-8, coordinates to ±1e6), mask = inside [0, W−1]×[0, H−1] and in front, colour and
   feature by bilinear sampling at the same normalised grid point, and the ray-direction difference (unit
   d_tar − d_src and the cosine d_tar·d_src, d = unit vector from the point to a camera centre); the grid
   point into grid (2, TILE). points_tile (3, TILE): the tile's points, padding columns repeating the last. */
static void project_tile(const struct sample_views *in, int v, int C, const float *restrict points_tile, int n,
                         float *restrict feat, float *restrict rd, float *restrict m, float *restrict grid) {
    float T[12], K[9], centre[3], target[3];  /* local copies: the loop below reads them from registers */
    memcpy(T, in->cam_from_world + v * 16, sizeof T);
    memcpy(K, in->K + v * 9, sizeof K);
    memcpy(centre, in->source_centers + v * 3, sizeof centre);
    memcpy(target, in->target_center, sizeof target);
    const float last_u = (float)(in->W - 1), last_v = (float)(in->H - 1);
    const float grid_x = 2.0f / (in->W - 1 > 1 ? last_u : 1.0f), grid_y = 2.0f / (in->H - 1 > 1 ? last_v : 1.0f);
    const float *px = points_tile, *py = px + TILE, *pz = py + TILE;
    float *gx = grid, *gy = grid + TILE;
    for (int t = 0; t < TILE; ++t) {  /* branch-free: vectorised over the tile */
        const float x = px[t], y = py[t], z = pz[t];
        const float camera_x = x * T[0] + y * T[1] + z * T[2] + T[3];
        const float camera_y = x * T[4] + y * T[5] + z * T[6] + T[7];
        const float camera_z = x * T[8] + y * T[9] + z * T[10] + T[11];
        const float pixel_x = camera_x * K[0] + camera_y * K[1] + camera_z * K[2];
        const float pixel_y = camera_x * K[3] + camera_y * K[4] + camera_z * K[5];
        const float depth = camera_x * K[6] + camera_y * K[7] + camera_z * K[8];
        const float divisor = depth > 1e-8f ? depth : 1e-8f;
        float u = pixel_x / divisor, w = pixel_y / divisor;
        u = u < -1e6f ? -1e6f : (u > 1e6f ? 1e6f : u);
        w = w < -1e6f ? -1e6f : (w > 1e6f ? 1e6f : w);
        const int inside = (u >= 0.0f) & (u <= last_u) & (w >= 0.0f) & (w <= last_v) & (depth > 0.0f);
        m[t] = inside ? 1.0f : 0.0f;
        gx[t] = u * grid_x - 1.0f;
        gy[t] = w * grid_y - 1.0f;
        const float p[3] = {x, y, z};
        float to_target[3], to_source[3], difference[3];
        float target_norm = 0.0f, source_norm = 0.0f, cosine = 0.0f, difference_norm = 0.0f;
        for (int i = 0; i < 3; ++i) {
            to_target[i] = target[i] - p[i];
            to_source[i] = centre[i] - p[i];
            target_norm += to_target[i] * to_target[i];
            source_norm += to_source[i] * to_source[i];
        }
        target_norm = __builtin_sqrtf(target_norm) + 1e-6f;
        source_norm = __builtin_sqrtf(source_norm) + 1e-6f;
        for (int i = 0; i < 3; ++i) {
            to_target[i] /= target_norm;
            to_source[i] /= source_norm;
            difference[i] = to_target[i] - to_source[i];
            difference_norm += difference[i] * difference[i];
            cosine += to_target[i] * to_source[i];
        }
        difference_norm = __builtin_sqrtf(difference_norm);
        difference_norm = difference_norm > 1e-6f ? difference_norm : 1e-6f;
        for (int i = 0; i < 3; ++i) rd[i * TILE + t] = difference[i] / difference_norm;
        rd[3 * TILE + t] = cosine;
    }
    for (int t = n; t < TILE; ++t) m[t] = 0.0f;
    const float *image = in->images + (int64_t)v * 3 * in->H * in->W;
    const float *features = in->features + (int64_t)v * in->h * in->w * (C - 3);
    for (int t = 0; t < TILE; ++t) {
        bilinear(image, in->H, in->W, 3, 0, gx[t], gy[t], feat + t);
        bilinear(features, in->h, in->w, C - 3, 1, gx[t], gy[t], feat + 3 * TILE + t);
    }
}

/* The layers of the packed parameters (aggregator_native.packed_parameters), in their order. */
enum layer { DIR1, DIR2, BASE1, BASE2, VIS1, VIS2, VISB1, VISB2, RGB1, RGB2, RGB3, GEO1, GEO2, LAYERS };

/* Pointers into a packed parameter buffer (or into a gradient buffer of the same layout). */
struct weights {
    float *w[LAYERS], *b[LAYERS];  /* weight (out, in) row-major, bias (out) */
    int out[LAYERS], in[LAYERS];
    float *s;                      /* the pooling sharpness s (its absolute value is used) */
};

/* Lays the layers of an aggregator with C = 3 + feature channels over `params`; returns the float count. */
static int64_t unpack(float *params, int C, struct weights *p) {
    const int out[LAYERS] = {16, C, 64, 32, 32, 33, 32, 1, 16, 8, 1, 64, 16};
    const int in[LAYERS] = {4, 16, 3 * C, 64, 32, 32, 32, 32, 37, 16, 8, 65, 64};
    int64_t offset = 0;
    for (int l = 0; l < LAYERS; ++l) {
        p->out[l] = out[l], p->in[l] = in[l];
        p->w[l] = params + offset;
        offset += (int64_t)out[l] * in[l];
        p->b[l] = params + offset;
        offset += out[l];
    }
    p->s = params + offset;
    return offset + 1;
}

/* The per-view activations of one tile of samples. Arrays marked "per view" hold (V, rows, TILE); the
   others either too (keep = 1: the backward pass needs them) or one view's rows that every view reuses
   (keep = 0: forward only, less to keep in cache). */
struct tile {
    int V, C, keep;
    float *feat, *rd, *colour, *m;  /* per view: feat_in + ray_dir_fc(rd) (C), rd (4), colour (3), mask (1) */
    float *grid;                    /* per view (2): where the projection sampled the source (x, y in [-1, 1]) */
    float *w, *x, *vis, *beta;      /* per view: pooling weights, x after the residual (32), vis, vis normalised */
    float *logit, *blend;           /* per view: blend logits (-1e9 where the view does not see the sample) and
                                       their softmax over the views, the weights of the colour blend */
    float *mean, *var, *pool_total; /* (C), (C), (1): the first pooling and Σ_v of its unnormalised weights */
    float *per_sample, *pooled;     /* (64): base_fc's first layer on [mean, var]; (65): [mean, var, mean β] */
    float *rgb;                     /* (3): the blended colour */
    /* kept per view for the backward pass: ray_dir_fc's hidden (16) and output (C), base_fc's hidden (64)
       and output (32), vis_fc's hidden (32), residual (32) and visibility logit after its ELU (1), the
       visibility q = sigmoid(logit)·m (1), vis_fc2's hidden (32), rgb_fc's hiddens (16, 8) */
    float *dir_hidden, *dir_out, *hidden, *base_out, *vis_hidden, *residual, *vis_logit, *q, *vis2_hidden;
    float *rgb_hidden1, *rgb_hidden2;
    float *scratch;                 /* (C + 80, TILE) */
    float *buffer;
};

static float *at(const struct tile *s, float *array, int rows, int v) {
    return array + (size_t)(s->keep ? v : 0) * rows * TILE;
}

/* The floats of one tile's arrays (see tile_layout). */
static size_t tile_floats(int V, int C, int keep) {
    const int per_view = C + 4 + 3 + 1 + 2 + 1 + 32 + 1 + 1 + 1 + 1;
    const int kept = 16 + C + 64 + 32 + 32 + 32 + 1 + 1 + 32 + 16 + 8;
    const int per_sample = C + C + 1 + 64 + 65 + 3 + C + 80;
    return (size_t)TILE * ((size_t)V * per_view + (size_t)(keep ? V : 1) * kept + per_sample);
}

/* Lays the tile's arrays out over `memory` (tile_floats(V, C, keep) floats). */
static void tile_layout(struct tile *s, int V, int C, int keep, float *memory) {
    s->V = V, s->C = C, s->keep = keep, s->buffer = memory;
    float *next = memory;
#define TAKE(field, rows) (s->field = next, next += (size_t)(rows) * TILE)
    TAKE(feat, V * C), TAKE(rd, V * 4), TAKE(colour, V * 3), TAKE(m, V), TAKE(grid, V * 2), TAKE(w, V);
    TAKE(x, V * 32);
    TAKE(vis, V), TAKE(beta, V), TAKE(logit, V), TAKE(blend, V);
    TAKE(mean, C), TAKE(var, C), TAKE(pool_total, 1), TAKE(per_sample, 64), TAKE(pooled, 65), TAKE(rgb, 3);
    TAKE(scratch, C + 80);
    const int copies = keep ? V : 1;
    TAKE(dir_hidden, copies * 16), TAKE(dir_out, copies * C), TAKE(hidden, copies * 64);
    TAKE(base_out, copies * 32), TAKE(vis_hidden, copies * 32), TAKE(residual, copies * 32);
    TAKE(vis_logit, copies), TAKE(q, copies), TAKE(vis2_hidden, copies * 32);
    TAKE(rgb_hidden1, copies * 16), TAKE(rgb_hidden2, copies * 8);
#undef TAKE
}

static int tile_alloc(struct tile *s, int V, int C, int keep) {
    float *memory = malloc(sizeof(float) * tile_floats(V, C, keep));
    if (!memory) return -1;
    tile_layout(s, V, C, keep, memory);
    return 0;
}

/* The tile's per-view inputs feat, rd, m, colour (and grid when projecting). Padding columns (t >= n) are
   never stored and no view sees them: zeros from arrays; the last point repeated when projecting (finite
   values, mask 0). */
static void fill_tile(const struct sample_views *in, int64_t P, int64_t start, int n, struct tile *s) {
    const int V = s->V, C = s->C;
    float points_tile[3 * TILE];
    if (!in->feat_in)
        for (int t = 0; t < TILE; ++t)
            for (int i = 0; i < 3; ++i) points_tile[i * TILE + t] = in->points[(start + (t < n ? t : n - 1)) * 3 + i];
    for (int v = 0; v < V; ++v) {
        float *feat = s->feat + v * C * TILE, *rd = s->rd + v * 4 * TILE, *m = s->m + v * TILE;
        if (in->feat_in) {
            gather_rows(feat, in->feat_in + v * C * P, C, P, start, n);
            gather_rows(rd, in->ray_diff + v * 4 * P, 4, P, start, n);
            gather_rows(m, in->mask + v * P, 1, P, start, n);
        } else {
            project_tile(in, v, C, points_tile, n, feat, rd, m, s->grid + v * 2 * TILE);
        }
        if (in->colours) gather_rows(s->colour + v * 3 * TILE, in->colours + v * 3 * P, 3, P, start, n);
        else memcpy(s->colour + v * 3 * TILE, feat, 3 * TILE * sizeof(float));
    }
}

/* The number of source views that see each of the tile's first n samples, into count (n). */
static void count_views(const struct tile *s, int n, float *count) {
    for (int t = 0; t < n; ++t) count[t] = 0.0f;
    for (int v = 0; v < s->V; ++v)
        for (int t = 0; t < n; ++t) count[t] += s->m[v * TILE + t];
}

/* x (rows, TILE) · per-sample scale (TILE) into out. */
static void scale_columns(const float *x, const float *scale, int rows, float *out) {
    for (int c = 0; c < rows; ++c)
        for (int t = 0; t < TILE; ++t) out[c * TILE + t] = x[c * TILE + t] * scale[t];
}

/* The anti-alias pooling weights before their normalisation, e_v = exp(|s|(cos_v − 1)), and per sample the
   view with the least of them (the first such view, as torch.min). */
static void alignment(const struct tile *s, float abs_s, float *e, int *least) {
    for (int t = 0; t < TILE; ++t) least[t] = 0;
    for (int v = 0; v < s->V; ++v)
        for (int t = 0; t < TILE; ++t) {
            e[v * TILE + t] = fast_exp(abs_s * (s->rd[(v * 4 + 3) * TILE + t] - 1.0f));
            if (e[v * TILE + t] < e[least[t] * TILE + t]) least[t] = v;
        }
}

/* The per-view layers, both poolings and the colour blend of one tile (fill_tile has set feat, rd, m and
   colour): IBRNetAggregator._per_view up to geometry_fc's input, `pooled`, and the blended `rgb`. */
static void tile_forward(const struct weights *p, struct tile *s, int anti_alias_pooling) {
    const int V = s->V, C = s->C;
    float *scratch = s->scratch;
    /* feat += ray_dir_fc(ray_diff) */
    for (int v = 0; v < V; ++v) {
        float *f = s->feat + v * C * TILE, *a1 = at(s, s->dir_hidden, 16, v), *a2 = at(s, s->dir_out, C, v);
        dense(p->w[DIR1], 4, p->b[DIR1], NULL, 16, 4, s->rd + v * 4 * TILE, a1, ELU);
        dense(p->w[DIR2], 16, p->b[DIR2], NULL, C, 16, a1, a2, ELU);
        for (int i = 0; i < C * TILE; ++i) f[i] += a2[i];
    }
    /* pooling weights: anti-alias exp(|s|(cos − 1)) minus their minimum over views, masked, normalised */
    if (anti_alias_pooling) {
        int least[TILE];
        float lowest[TILE];
        alignment(s, __builtin_fabsf(*p->s), s->w, least);
        for (int t = 0; t < TILE; ++t) lowest[t] = s->w[least[t] * TILE + t];
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) s->w[v * TILE + t] = (s->w[v * TILE + t] - lowest[t]) * s->m[v * TILE + t];
    } else {
        memcpy(s->w, s->m, V * TILE * sizeof(float));
    }
    normalise_over_views(s->w, V, s->pool_total);
    /* base_fc([mean, var, feat]): the mean/var block of its first layer once per sample */
    weighted_mean_variance(s->feat, s->w, V, C, s->mean, s->var);
    const float *base1 = p->w[BASE1];
    dense(base1, 3 * C, p->b[BASE1], NULL, 64, C, s->mean, s->per_sample, NONE);
    dense(base1 + C, 3 * C, NULL, s->per_sample, 64, C, s->var, s->per_sample, NONE);
    for (int v = 0; v < V; ++v) {
        float *xv = s->x + v * 32 * TILE, *m_v = s->m + v * TILE, *vis_v = s->vis + v * TILE;
        float *h = at(s, s->hidden, 64, v), *xb = at(s, s->base_out, 32, v), *g = at(s, s->vis_hidden, 32, v);
        float *r = at(s, s->residual, 32, v), *l = at(s, s->vis_logit, 1, v), *q = at(s, s->q, 1, v);
        float *n = at(s, s->vis2_hidden, 32, v);
        dense(base1 + 2 * C, 3 * C, NULL, s->per_sample, 64, C, s->feat + v * C * TILE, h, ELU);
        dense(p->w[BASE2], 64, p->b[BASE2], NULL, 32, 64, h, xb, ELU);
        /* vis_fc(x·w): rows 0..31 of its last layer give the residual, row 32 the visibility */
        scale_columns(xb, s->w + v * TILE, 32, scratch);
        dense(p->w[VIS1], 32, p->b[VIS1], NULL, 32, 32, scratch, g, ELU);
        dense(p->w[VIS2], 32, p->b[VIS2], NULL, 32, 32, g, r, ELU);
        dense(p->w[VIS2] + 32 * 32, 32, p->b[VIS2] + 32, NULL, 1, 32, g, l, ELU);
        for (int t = 0; t < TILE; ++t) q[t] = m_v[t] / (1.0f + fast_exp(-l[t]));
        for (int i = 0; i < 32 * TILE; ++i) xv[i] = xb[i] + r[i]; /* x = x + residual */
        /* vis = vis_fc2(x·q) · mask */
        scale_columns(xv, q, 32, scratch);
        dense(p->w[VISB1], 32, p->b[VISB1], NULL, 32, 32, scratch, n, ELU);
        dense(p->w[VISB2], 32, p->b[VISB2], NULL, 1, 32, n, vis_v, SIGMOID);
        for (int t = 0; t < TILE; ++t) vis_v[t] *= m_v[t];
        /* blend logit rgb_fc([x, vis, ray_diff]); -1e9 where the view does not see the sample */
        memcpy(scratch, xv, 32 * TILE * sizeof(float));
        memcpy(scratch + 32 * TILE, vis_v, TILE * sizeof(float));
        memcpy(scratch + 33 * TILE, s->rd + v * 4 * TILE, 4 * TILE * sizeof(float));
        float *j1 = at(s, s->rgb_hidden1, 16, v), *j2 = at(s, s->rgb_hidden2, 8, v), *logit_v = s->logit + v * TILE;
        dense(p->w[RGB1], 37, p->b[RGB1], NULL, 16, 37, scratch, j1, ELU);
        dense(p->w[RGB2], 16, p->b[RGB2], NULL, 8, 16, j1, j2, ELU);
        dense(p->w[RGB3], 8, p->b[RGB3], NULL, 1, 8, j2, logit_v, NONE);
        for (int t = 0; t < TILE; ++t) logit_v[t] = m_v[t] == 0.0f ? -1e9f : logit_v[t];
    }
    /* geometry_fc's input [mean, var, mean weight] with the normalised visibilities β as weights */
    memcpy(s->beta, s->vis, V * TILE * sizeof(float));
    normalise_over_views(s->beta, V, NULL);
    weighted_mean_variance(s->x, s->beta, V, 32, s->pooled, s->pooled + 32 * TILE);
    float *mean_weight = s->pooled + 64 * TILE;
    for (int t = 0; t < TILE; ++t) mean_weight[t] = 0.0f;
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) mean_weight[t] += s->beta[v * TILE + t];
    for (int t = 0; t < TILE; ++t) mean_weight[t] /= V;
    /* blend weights: softmax over views of the logits; rgb = Σ_v blend_v colour_v */
    float top[TILE], total[TILE] = {0};
    for (int t = 0; t < TILE; ++t) top[t] = -3.4e38f;
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) top[t] = s->logit[v * TILE + t] > top[t] ? s->logit[v * TILE + t] : top[t];
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) {
            s->blend[v * TILE + t] = fast_exp(s->logit[v * TILE + t] - top[t]);
            total[t] += s->blend[v * TILE + t];
        }
    memset(s->rgb, 0, 3 * TILE * sizeof(float));
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) {
            s->blend[v * TILE + t] /= total[t];
            for (int c = 0; c < 3; ++c) s->rgb[c * TILE + t] += s->blend[v * TILE + t] * s->colour[(v * 3 + c) * TILE + t];
        }
}

/* Per-view layers, pooling and geometry_fc for all P samples -> geometry (P, 16), rgb (P, 3) and the
   number of views that see each sample (P). */
static int per_view_part(const struct sample_views *in, int V, int C, int64_t P, float *params,
                         int anti_alias_pooling, float *geometry, float *rgb, float *num_views) {
    struct weights p;
    unpack(params, C, &p);
    struct tile s;
    if (tile_alloc(&s, V, C, 0)) return -1;
    float *h64 = s.scratch, *h16 = s.scratch + 64 * TILE;  /* scratch rows: C + 80 */
    for (int64_t start = 0; start < P; start += TILE) {
        const int n = P - start < TILE ? (int)(P - start) : TILE;
        fill_tile(in, P, start, n, &s);
        count_views(&s, n, num_views + start);
        tile_forward(&p, &s, anti_alias_pooling);
        dense(p.w[GEO1], 65, p.b[GEO1], NULL, 64, 65, s.pooled, h64, ELU);
        dense(p.w[GEO2], 64, p.b[GEO2], NULL, 16, 64, h64, h16, ELU);
        scatter_columns(h16, geometry, 16, start, n);
        scatter_columns(s.rgb, rgb, 3, start, n);
    }
    free(s.buffer);
    return 0;
}

/* ---- Backward pass (training): the gradients of `pooled` and `rgb` back to feat_in, the colours and the
   per-view layers' parameters, tile by tile, from the activations the forward pass kept. ---- */

/* grad *= ELU'(pre-activation), from the ELU's output y (alpha 1): 1 where y > 0, else y + 1 = exp(pre). */
static void elu_backward(float *grad, const float *y, int n) {
    for (int i = 0; i < n; ++i) grad[i] *= y[i] > 0.0f ? 1.0f : y[i] + 1.0f;
}

/* One call's weight-gradient accumulators: layer l's (out, ld[l]) with ld = round8(in) + 8 columns (see
   accumulate_gradient), its bias gradient, and ∂/∂|s|. */
struct gradients {
    float *w[LAYERS], *b[LAYERS], abs_s, *buffer;
    int ld[LAYERS];
};

static int gradients_alloc(struct gradients *g, const struct weights *p) {
    size_t total = 0;
    for (int l = 0; l < LAYERS; ++l) {
        g->ld[l] = (p->in[l] + 7) / 8 * 8 + 8;
        total += (size_t)p->out[l] * (g->ld[l] + 1);
    }
    g->buffer = calloc(total, sizeof(float));
    if (!g->buffer) return -1;
    float *next = g->buffer;
    for (int l = 0; l < LAYERS; ++l) {
        g->w[l] = next, next += (size_t)p->out[l] * g->ld[l];
        g->b[l] = next, next += p->out[l];
    }
    g->abs_s = 0.0f;
    return 0;
}

/* Adds the accumulated gradients into `out`, laid out as the packed parameters p (∂/∂s = sign(s) ∂/∂|s|). */
static void gradients_add_to(const struct gradients *g, const struct weights *p, struct weights *out) {
    for (int l = 0; l < LAYERS; ++l)
        for (int o = 0; o < p->out[l]; ++o) {
            for (int k = 0; k < p->in[l]; ++k) out->w[l][o * p->in[l] + k] += g->w[l][o * g->ld[l] + k];
            out->b[l][o] += g->b[l][o];
        }
    const float s = *p->s;
    *out->s += s > 0.0f ? g->abs_s : (s < 0.0f ? -g->abs_s : 0.0f);
}

/* gw (O, ld) += G (O, TILE) · X (K, TILE)ᵀ and, if gb, gb (O) += Σ_t G. X is transposed into xt (TILE, ld)
   first, zero after column K, so that each product adds whole vectors of 8 columns to gw: the zero columns
   land in gw's padding or, for a column block of a wider layer, add zeros to the next block. */
static void accumulate_gradient(float *gw, int ld, float *gb, const float *G, int O, const float *X, int K,
                                float *xt) {
    const int vectors = (K + 7) / 8;
    for (int t = 0; t < TILE; ++t) {
        for (int k = 0; k < K; ++k) xt[t * ld + k] = X[k * TILE + t];
        for (int k = K; k < 8 * vectors; ++k) xt[t * ld + k] = 0.0f;
    }
    for (int o = 0; o < O; o += 4) {  /* four rows at a time: independent accumulators */
        const int rows = O - o < 4 ? O - o : 4;
        const float *g[4];
        for (int i = 0; i < 4; ++i) g[i] = G + (size_t)(o + (i < rows ? i : 0)) * TILE;
        for (int j = 0; j < vectors; ++j) {
            vec8 a[4];
            for (int i = 0; i < 4; ++i) a[i] = load8(gw + (size_t)(o + (i < rows ? i : 0)) * ld + 8 * j);
            for (int t = 0; t < TILE; ++t) {
                const vec8 column = load8(xt + t * ld + 8 * j);
                for (int i = 0; i < 4; ++i) a[i] += broadcast8(g[i][t]) * column;
            }
            for (int i = 0; i < rows; ++i) store8(gw + (size_t)(o + i) * ld + 8 * j, a[i]);
        }
        if (gb)
            for (int i = 0; i < rows; ++i) {
                float sum = 0.0f;
                for (int t = 0; t < TILE; ++t) sum += g[i][t];
                gb[o + i] += sum;
            }
    }
}

/* The same, for layer l of the accumulators, from column `column` of its weight on. */
static void accumulate_layer(struct gradients *g, int l, int column, int with_bias, const float *G, int O,
                             const float *X, int K, float *xt) {
    accumulate_gradient(g->w[l] + column, g->ld[l], with_bias ? g->b[l] : NULL, G, O, X, K, xt);
}

/* out (K, TILE) = W[:, :K]ᵀ G for W (O, ·) of row stride ldw and G (O, TILE): dense on the transposed weight
   wt (K, O) of row stride ldt (transposed once per call). */
static void dense_transposed(const float *wt, int ldt, int O, int K, const float *G, float *out) {
    dense(wt, ldt, NULL, NULL, K, O, G, out, NONE);
}

/* Backward of mean = Σ_v w_v x_v, var = Σ_v w_v (x_v − mean)² over the views (x (V, C, TILE), w (V, TILE)):
   adds to grad_x (V, C, TILE) and grad_w (V, TILE). With gm' = ∂mean − 2 Σ_u w_u (x_u − mean) ∂var:
   ∂x_v = 2 w_v (x_v − mean) ∂var + w_v gm', ∂w_v = Σ_c (x_v − mean)² ∂var + x_v gm'. */
static void weighted_mean_variance_backward(const float *x, const float *w, int V, int C, const float *mean,
                                            const float *grad_mean, const float *grad_var, float *grad_x,
                                            float *grad_w) {
    for (int c = 0; c < C; ++c) {
        const float *mc = mean + c * TILE, *gv = grad_var + c * TILE;
        float spread[TILE] = {0}, gm[TILE];
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) spread[t] += w[v * TILE + t] * (x[(v * C + c) * TILE + t] - mc[t]);
        for (int t = 0; t < TILE; ++t) gm[t] = grad_mean[c * TILE + t] - 2.0f * spread[t] * gv[t];
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) {
                const float xv = x[(v * C + c) * TILE + t], d = xv - mc[t], wv = w[v * TILE + t];
                grad_x[(v * C + c) * TILE + t] += 2.0f * wv * d * gv[t] + wv * gm[t];
                grad_w[v * TILE + t] += d * d * gv[t] + xv * gm[t];
            }
    }
}

/* Backward of n_v = r_v / (Σ_u r_u + 1e-8): adds (∂n_v − Σ_u ∂n_u n_u) / (Σ_u r_u + 1e-8) to grad_raw. */
static void normalise_backward(const float *total, const float *normalised, const float *grad_normalised, int V,
                               float *grad_raw) {
    float dot[TILE] = {0};
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) dot[t] += grad_normalised[v * TILE + t] * normalised[v * TILE + t];
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t)
            grad_raw[v * TILE + t] += (grad_normalised[v * TILE + t] - dot[t]) / (total[t] + 1e-8f);
}

/* The gradients of one tile: "per view" arrays (V, rows, TILE). */
struct tile_gradients {
    float *feat, *x, *vis, *w, *logit, *beta;  /* per view: C, 32, 1, 1, 1, 1 rows */
    float *per_sample, *mean, *var, *total;    /* 64, C, C, 1 rows */
    float *g64, *g33, *g32, *g16, *g8, *e;     /* work: one view's layer gradients; e (V) */
    float *xt;                                 /* (TILE, the widest ld): accumulate_gradient's transpose */
    float *buffer;
};

static int tile_gradients_alloc(struct tile_gradients *d, int V, int C) {
    const int ld = ((3 * C > 64 ? 3 * C : 64) + 7) / 8 * 8 + 8;  /* the widest layer's accumulator */
    d->buffer = malloc(sizeof(float) * TILE * ((size_t)V * (C + 32 + 5) + 64 + 2 * C + 1 + 64 + 33 + 32 + 16 + 8 + ld));
    if (!d->buffer) return -1;
    float *next = d->buffer;
#define TAKE(field, rows) (d->field = next, next += (size_t)(rows) * TILE)
    TAKE(feat, V * C), TAKE(x, V * 32), TAKE(vis, V), TAKE(w, V), TAKE(logit, V), TAKE(beta, V), TAKE(e, V);
    TAKE(per_sample, 64), TAKE(mean, C), TAKE(var, C), TAKE(total, 1);
    TAKE(g64, 64), TAKE(g33, 33), TAKE(g32, 32), TAKE(g16, 16), TAKE(g8, 8), TAKE(xt, ld);
#undef TAKE
    return 0;
}

/* Backward of tile_forward (whose activations `s` holds, kept per view): grad_pooled (65, TILE) and
   grad_rgb (3, TILE) in; feat_in's gradient out in d->feat, the colours' in grad_colour (V, 3, TILE) if not
   NULL, the parameters' added to g. pt: the transposed weights (same layout, each (out, in) block stored
   (in, out)). */
static void tile_backward(const struct weights *p, const struct weights *pt, struct gradients *g, const struct tile *s,
                          struct tile_gradients *d, const float *grad_pooled, const float *grad_rgb,
                          int anti_alias_pooling, float *grad_colour) {
    const int V = s->V, C = s->C;
    float *scratch = s->scratch, *xt = d->xt;
    memset(d->feat, 0, sizeof(float) * TILE * V * C);
    memset(d->x, 0, sizeof(float) * TILE * V * 32);
    memset(d->vis, 0, sizeof(float) * TILE * V);
    memset(d->w, 0, sizeof(float) * TILE * V);
    memset(d->per_sample, 0, sizeof(float) * TILE * 64);
    /* the colour blend: rgb = Σ_v π_v colour_v, π = softmax over views of the logits (kept as s->blend) */
    {
        float dot[TILE] = {0};
        const float *pi = s->blend;
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) {
                float *gl = d->logit + v * TILE;
                const float *colour = s->colour + v * 3 * TILE, pv = pi[v * TILE + t];
                gl[t] = grad_rgb[t] * colour[t] + grad_rgb[TILE + t] * colour[TILE + t]
                        + grad_rgb[2 * TILE + t] * colour[2 * TILE + t];  /* ∂π_v, for now */
                dot[t] += pv * gl[t];
                if (grad_colour)
                    for (int c = 0; c < 3; ++c) grad_colour[(v * 3 + c) * TILE + t] = pv * grad_rgb[c * TILE + t];
            }
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) {  /* the -1e9 fill of unseen views passes no gradient */
                float *gl = d->logit + v * TILE;
                gl[t] = s->m[v * TILE + t] == 0.0f ? 0.0f : pi[v * TILE + t] * (gl[t] - dot[t]);
            }
    }
    /* pooled = [mean, var, mean β] of x with weights β = vis / (Σ vis + 1e-8) */
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) d->beta[v * TILE + t] = grad_pooled[64 * TILE + t] / V;
    weighted_mean_variance_backward(s->x, s->beta, V, 32, s->pooled, grad_pooled, grad_pooled + 32 * TILE, d->x,
                                    d->beta);
    for (int t = 0; t < TILE; ++t) d->total[t] = 0.0f;
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) d->total[t] += s->vis[v * TILE + t];
    normalise_backward(d->total, s->beta, d->beta, V, d->vis);
    /* the per-view layers, last to first */
    for (int v = 0; v < V; ++v) {
        const float *m_v = s->m + v * TILE, *vis_v = s->vis + v * TILE, *xv = s->x + v * 32 * TILE;
        const float *w_v = s->w + v * TILE, *rd_v = s->rd + v * 4 * TILE;
        float *gx = d->x + v * 32 * TILE, *gvis = d->vis + v * TILE, *gl = d->logit + v * TILE;
        float *h = at(s, s->hidden, 64, v), *xb = at(s, s->base_out, 32, v), *vis_h = at(s, s->vis_hidden, 32, v);
        float *r = at(s, s->residual, 32, v), *l = at(s, s->vis_logit, 1, v), *q = at(s, s->q, 1, v);
        float *n = at(s, s->vis2_hidden, 32, v), *j1 = at(s, s->rgb_hidden1, 16, v), *j2 = at(s, s->rgb_hidden2, 8, v);
        /* rgb_fc([x, vis, ray_diff]) -> logit */
        accumulate_layer(g, RGB3, 0, 1, gl, 1, j2, 8, xt);
        for (int i = 0; i < 8; ++i)
            for (int t = 0; t < TILE; ++t) d->g8[i * TILE + t] = p->w[RGB3][i] * gl[t];
        elu_backward(d->g8, j2, 8 * TILE);
        accumulate_layer(g, RGB2, 0, 1, d->g8, 8, j1, 16, xt);
        dense_transposed(pt->w[RGB2], 8, 8, 16, d->g8, d->g16);
        elu_backward(d->g16, j1, 16 * TILE);
        memcpy(scratch, xv, 32 * TILE * sizeof(float));
        memcpy(scratch + 32 * TILE, vis_v, TILE * sizeof(float));
        memcpy(scratch + 33 * TILE, rd_v, 4 * TILE * sizeof(float));
        accumulate_layer(g, RGB1, 0, 1, d->g16, 16, scratch, 37, xt);
        dense_transposed(pt->w[RGB1], 16, 16, 33, d->g16, d->g33);  /* ∂ of [x, vis]; ray_diff needs none */
        for (int i = 0; i < 32 * TILE; ++i) gx[i] += d->g33[i];
        for (int t = 0; t < TILE; ++t) gvis[t] += d->g33[32 * TILE + t];
        /* vis = sigmoid(vis_fc2(x·q))·m */
        float *gpre = d->g33;  /* one row */
        for (int t = 0; t < TILE; ++t) gpre[t] = gvis[t] * m_v[t] * vis_v[t] * (1.0f - vis_v[t]);
        accumulate_layer(g, VISB2, 0, 1, gpre, 1, n, 32, xt);
        for (int i = 0; i < 32; ++i)
            for (int t = 0; t < TILE; ++t) d->g32[i * TILE + t] = p->w[VISB2][i] * gpre[t];
        elu_backward(d->g32, n, 32 * TILE);
        scale_columns(xv, q, 32, scratch);
        accumulate_layer(g, VISB1, 0, 1, d->g32, 32, scratch, 32, xt);
        dense_transposed(pt->w[VISB1], 32, 32, 32, d->g32, d->g64);  /* ∂(x·q) */
        float gq[TILE] = {0};
        for (int c = 0; c < 32; ++c)
            for (int t = 0; t < TILE; ++t) {
                gx[c * TILE + t] += d->g64[c * TILE + t] * q[t];
                gq[t] += d->g64[c * TILE + t] * xv[c * TILE + t];
            }
        /* x = base + residual, q = sigmoid(logit)·m, [residual, logit] = ELU(vis_fc[2](hidden)) */
        for (int i = 0; i < 32 * TILE; ++i) d->g33[i] = gx[i];
        elu_backward(d->g33, r, 32 * TILE);
        for (int t = 0; t < TILE; ++t) d->g33[32 * TILE + t] = gq[t] * m_v[t] * q[t] * (1.0f - q[t]);
        elu_backward(d->g33 + 32 * TILE, l, TILE);
        accumulate_layer(g, VIS2, 0, 1, d->g33, 33, vis_h, 32, xt);
        dense_transposed(pt->w[VIS2], 33, 33, 32, d->g33, d->g32);
        elu_backward(d->g32, vis_h, 32 * TILE);
        scale_columns(xb, w_v, 32, scratch);
        accumulate_layer(g, VIS1, 0, 1, d->g32, 32, scratch, 32, xt);
        dense_transposed(pt->w[VIS1], 32, 32, 32, d->g32, d->g64);  /* ∂(base·w) */
        float *gw = d->w + v * TILE;
        for (int c = 0; c < 32; ++c)
            for (int t = 0; t < TILE; ++t) {
                gw[t] += d->g64[c * TILE + t] * xb[c * TILE + t];
                d->g32[c * TILE + t] = gx[c * TILE + t] + d->g64[c * TILE + t] * w_v[t];  /* ∂base */
            }
        /* base = ELU(base_fc[2](hidden)), hidden = ELU(per_sample + W_feat feat) */
        elu_backward(d->g32, xb, 32 * TILE);
        accumulate_layer(g, BASE2, 0, 1, d->g32, 32, h, 64, xt);
        dense_transposed(pt->w[BASE2], 32, 32, 64, d->g32, d->g64);
        elu_backward(d->g64, h, 64 * TILE);
        for (int i = 0; i < 64 * TILE; ++i) d->per_sample[i] += d->g64[i];
        accumulate_layer(g, BASE1, 2 * C, 0, d->g64, 64, s->feat + v * C * TILE, C, xt);
        dense_transposed(pt->w[BASE1] + 2 * C * 64, 64, 64, C, d->g64, d->feat + v * C * TILE);
    }
    /* per_sample = base_fc[0]'s [mean, var] block + bias; mean, var: the first pooling of feat */
    accumulate_layer(g, BASE1, 0, 1, d->per_sample, 64, s->mean, C, xt);
    accumulate_layer(g, BASE1, C, 0, d->per_sample, 64, s->var, C, xt);
    dense_transposed(pt->w[BASE1], 64, 64, C, d->per_sample, d->mean);
    dense_transposed(pt->w[BASE1] + C * 64, 64, 64, C, d->per_sample, d->var);
    weighted_mean_variance_backward(s->feat, s->w, V, C, s->mean, d->mean, d->var, d->feat, d->w);
    /* w = u / (Σ u + 1e-8), u_v = (e_v − min_u e_u)·m_v, e_v = exp(|s|(cos_v − 1)) */
    if (anti_alias_pooling) {
        float *gu = d->beta, lowest_gradient[TILE] = {0};
        int least[TILE];
        memset(gu, 0, sizeof(float) * TILE * V);
        normalise_backward(s->pool_total, s->w, d->w, V, gu);
        alignment(s, __builtin_fabsf(*p->s), d->e, least);
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) {
                gu[v * TILE + t] *= s->m[v * TILE + t];  /* now ∂e_v */
                lowest_gradient[t] -= gu[v * TILE + t];
            }
        for (int t = 0; t < TILE; ++t) gu[least[t] * TILE + t] += lowest_gradient[t];
        float g_abs_s = 0.0f;
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t)
                g_abs_s += gu[v * TILE + t] * d->e[v * TILE + t] * (s->rd[(v * 4 + 3) * TILE + t] - 1.0f);
        g->abs_s += g_abs_s;
    }
    /* feat = feat_in + ELU(ray_dir_fc[2](ELU(ray_dir_fc[0](ray_diff)))) */
    for (int v = 0; v < V; ++v) {
        float *a1 = at(s, s->dir_hidden, 16, v), *a2 = at(s, s->dir_out, C, v);
        memcpy(scratch, d->feat + v * C * TILE, sizeof(float) * TILE * C);
        elu_backward(scratch, a2, C * TILE);
        accumulate_layer(g, DIR2, 0, 1, scratch, C, a1, 16, xt);
        dense_transposed(pt->w[DIR2], C, C, 16, scratch, d->g16);
        elu_backward(d->g16, a1, 16 * TILE);
        accumulate_layer(g, DIR1, 0, 1, d->g16, 16, s->rd + v * 4 * TILE, 4, xt);
    }
}


/* out (O, S) = W (O, K) · in (K, S) + bias, channel-major, any S (vectorised over S). */
static void matmul_channels(const float *restrict W, const float *restrict bias, int O, int K,
                            const float *restrict in, int S, float *restrict out) {
    for (int o = 0; o < O; ++o) {
        float *restrict row = out + o * S;
        for (int i = 0; i < S; ++i) row[i] = bias ? bias[o] : 0.0f;
        for (int k = 0; k < K; ++k) {
            const float w = W[o * K + k], *x = in + k * S;
            for (int i = 0; i < S; ++i) row[i] += w * x[i];
        }
    }
}

/* The ray transformer (one attention layer: 4 heads of 4 channels over the S samples of a ray, residual,
   LayerNorm) and the density head for one ray. geometry (S, 16) sample-major, num_valid (S): views that
   see each sample; work: 8 · 16 · S + S · S floats. Query rows of samples seen by <= 1 view attend
   uniformly (the mean of the values), as the original; samples seen by no view get density 0. */
static void ray_transformer(const float *geometry, const float *position, const float *num_valid, int S,
                            const float *params, float *sigma, float *work) {
    const float *wq = params, *wk = wq + 256, *wv = wk + 256, *wo = wv + 256;
    const float *norm_w = wo + 256, *norm_b = norm_w + 16;
    const float *out1_w = norm_b + 16, *out1_b = out1_w + 256, *out2_w = out1_b + 16, *out2_b = out2_w + 16;
    float *x = work, *q = x + 16 * S, *k = q + 16 * S, *v = k + 16 * S, *attended = v + 16 * S;
    float *y = attended + 16 * S, *column = y + 16 * S, *total = column + 16 * S, *p = total + 16 * S;
    for (int c = 0; c < 16; ++c)
        for (int i = 0; i < S; ++i) x[c * S + i] = geometry[i * 16 + c] + position[i * 16 + c];
    matmul_channels(wq, NULL, 16, 16, x, S, q);
    matmul_channels(wk, NULL, 16, 16, x, S, k);
    matmul_channels(wv, NULL, 16, 16, x, S, v);
    for (int h = 0; h < 4; ++h) {
        /* p[j][i] = q_i · k_j / √4 for query i and key j, then softmax over j: columns are queries */
        const float *restrict qh = q + 4 * h * S, *restrict kh = k + 4 * h * S, *restrict vh = v + 4 * h * S;
        float *restrict top = column, *restrict sum = total;
        for (int i = 0; i < S; ++i) top[i] = -3.4e38f;
        for (int j = 0; j < S; ++j) {
            float *restrict row = p + j * S;
            const float k0 = 0.5f * kh[j], k1 = 0.5f * kh[S + j], k2 = 0.5f * kh[2 * S + j], k3 = 0.5f * kh[3 * S + j];
            for (int i = 0; i < S; ++i) {
                row[i] = qh[i] * k0 + qh[S + i] * k1 + qh[2 * S + i] * k2 + qh[3 * S + i] * k3;
                top[i] = row[i] > top[i] ? row[i] : top[i];
            }
        }
        for (int i = 0; i < S; ++i) sum[i] = 0.0f;
        for (int j = 0; j < S; ++j) {
            float *restrict row = p + j * S;
            for (int i = 0; i < S; ++i) {
                row[i] = exp_up_to_88(row[i] - top[i]);  /* <= 0 */
                sum[i] += row[i];
            }
        }
        /* attended = p·v for the head's 4 channels at once (each row of p read once) */
        float *restrict out0 = attended + 4 * h * S, *restrict out1 = out0 + S, *restrict out2 = out1 + S;
        float *restrict out3 = out2 + S;
        float mean[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int i = 0; i < 4 * S; ++i) out0[i] = 0.0f;
        for (int j = 0; j < S; ++j) {
            const float v0 = vh[j], v1 = vh[S + j], v2 = vh[2 * S + j], v3 = vh[3 * S + j];
            const float *restrict row = p + j * S;
            mean[0] += v0, mean[1] += v1, mean[2] += v2, mean[3] += v3;
            for (int i = 0; i < S; ++i) {
                out0[i] += v0 * row[i];
                out1[i] += v1 * row[i];
                out2[i] += v2 * row[i];
                out3[i] += v3 * row[i];
            }
        }
        for (int d = 0; d < 4; ++d) {
            float *restrict out = out0 + d * S;
            const float uniform = mean[d] / S;  /* what rows of samples seen by <= 1 view get */
            for (int i = 0; i < S; ++i) out[i] = num_valid[i] > 1.0f ? out[i] / total[i] : uniform;
        }
    }
    /* LayerNorm(fc(attended) + x) over the 16 channels, eps 1e-6 */
    matmul_channels(wo, NULL, 16, 16, attended, S, y);
    float *mean = column, *variance = total;
    for (int i = 0; i < S; ++i) mean[i] = variance[i] = 0.0f;
    for (int c = 0; c < 16; ++c)
        for (int i = 0; i < S; ++i) {
            y[c * S + i] += x[c * S + i];
            mean[i] += y[c * S + i];
        }
    for (int i = 0; i < S; ++i) mean[i] /= 16.0f;
    for (int c = 0; c < 16; ++c)
        for (int i = 0; i < S; ++i) {
            const float d = y[c * S + i] - mean[i];
            variance[i] += d * d;
        }
    for (int i = 0; i < S; ++i) variance[i] = 1.0f / __builtin_sqrtf(variance[i] / 16.0f + 1e-6f);
    for (int c = 0; c < 16; ++c)
        for (int i = 0; i < S; ++i) y[c * S + i] = (y[c * S + i] - mean[i]) * variance[i] * norm_w[c] + norm_b[c];
    /* out_geometry_fc: ELU(W1 y + b1), then ReLU(w2 · h + b2); density 0 where no view sees the sample */
    float *hidden = x;
    matmul_channels(out1_w, out1_b, 16, 16, y, S, hidden);
    elu_in_place(hidden, 16 * S);
    for (int i = 0; i < S; ++i) total[i] = out2_b[0];
    for (int c = 0; c < 16; ++c)
        for (int i = 0; i < S; ++i) total[i] += out2_w[c] * hidden[c * S + i];
    for (int i = 0; i < S; ++i) sigma[i] = num_valid[i] < 1.0f ? 0.0f : (total[i] < 0.0f ? 0.0f : total[i]); /* NaN stays */
}

/* The whole aggregator for R rays of S samples from the per-view inputs `in`; rgb (P, 3), sigma (P) and
   num_views (P) out. Returns 0, or -1 when a buffer cannot be allocated. */
static int aggregate(const struct sample_views *in, int64_t V, int64_t C, int64_t R, int64_t S, const float *params,
                     const float *transformer_params, const float *position, int anti_alias_pooling, float *rgb,
                     float *sigma, float *num_views) {
    const int64_t P = R * S;
    float *geometry = malloc(sizeof(float) * P * 16);
    float *work = malloc(sizeof(float) * S * (16 * 8 + S));
    int status = geometry && work ? 0 : -1;
    if (status == 0)  /* params: read only */
        status = per_view_part(in, (int)V, (int)C, P, (float *)params, anti_alias_pooling, geometry, rgb, num_views);
    for (int64_t r = 0; status == 0 && r < R; ++r)
        ray_transformer(geometry + r * S * 16, position, num_views + r * S, (int)S, transformer_params, sigma + r * S,
                        work);
    free(geometry);
    free(work);
    return status;
}

/* From the projector's arrays (see the top of this file). */
int ibrnet_aggregate(const float *feat_in, const float *ray_diff, const float *mask, int64_t V, int64_t C, int64_t R,
                     int64_t S, const float *params, const float *transformer_params, const float *position,
                     int anti_alias_pooling, float *rgb, float *sigma, float *num_views) {
    const struct sample_views in = {.feat_in = feat_in, .ray_diff = ray_diff, .mask = mask};
    return aggregate(&in, V, C, R, S, params, transformer_params, position, anti_alias_pooling, rgb, sigma, num_views);
}

/* From world points (R·S, 3), projected here into the V source views: target_center (3), K (V, 3, 3),
   cam_from_world (V, 4, 4), source_centers (V, 3), images (V, 3, H, W), features (V, h, w, C − 3)
   channels-last. */
int ibrnet_render_points(const float *points, const float *target_center, const float *K, const float *cam_from_world,
                         const float *source_centers, const float *images, int64_t H, int64_t W,
                         const float *features, int64_t h, int64_t w, int64_t V, int64_t C, int64_t R, int64_t S,
                         const float *params, const float *transformer_params, const float *position,
                         int anti_alias_pooling, float *rgb, float *sigma, float *num_views) {
    const struct sample_views in = {.points = points, .target_center = target_center, .K = K,
                                    .cam_from_world = cam_from_world, .source_centers = source_centers,
                                    .images = images, .features = features, .H = H, .W = W, .h = h, .w = w};
    return aggregate(&in, V, C, R, S, params, transformer_params, position, anti_alias_pooling, rgb, sigma, num_views);
}

/* The floats of the activations ibrnet_per_view_forward keeps for P samples (`saved`). */
int64_t ibrnet_per_view_saved_floats(int64_t V, int64_t C, int64_t P) {
    return (P + TILE - 1) / TILE * (int64_t)tile_floats((int)V, (int)C, 1);
}

/* Training, forward: the per-view part of the aggregator (IBRNetAggregator._per_view up to geometry_fc) for
   the samples begin..end-1 of `in` (threads split P that way; begin a multiple of TILE) -> pooled (P, 65) =
   [mean, var, mean weight] (geometry_fc's input), rgb (P, 3) and, unless NULL, num_views (P). Every tile's
   activations are kept in `saved` (ibrnet_per_view_saved_floats floats, tile by tile) for the backward pass. */
static void per_view_forward(const struct sample_views *in, int64_t V, int64_t C, int64_t P, int64_t begin,
                             int64_t end, const float *params, int anti_alias_pooling, float *pooled, float *rgb,
                             float *num_views, float *saved) {
    struct weights p;
    unpack((float *)params, (int)C, &p);  /* read only */
    struct tile s;
    for (int64_t start = begin; start < end; start += TILE) {
        const int n = end - start < TILE ? (int)(end - start) : TILE;
        tile_layout(&s, (int)V, (int)C, 1, saved + start / TILE * tile_floats((int)V, (int)C, 1));
        fill_tile(in, P, start, n, &s);
        tile_forward(&p, &s, anti_alias_pooling);
        scatter_columns(s.pooled, pooled, 65, start, n);
        scatter_columns(s.rgb, rgb, 3, start, n);
        if (num_views) count_views(&s, n, num_views + start);
    }
}

/* From the projector's arrays feat_in (V, C, P), ray_diff (V, 4, P), mask (V, P) and colours (V, 3, P). */
void ibrnet_per_view_forward(const float *feat_in, const float *ray_diff, const float *mask, const float *colours,
                             int64_t V, int64_t C, int64_t P, int64_t begin, int64_t end, const float *params,
                             int anti_alias_pooling, float *pooled, float *rgb, float *saved) {
    const struct sample_views in = {.feat_in = feat_in, .ray_diff = ray_diff, .mask = mask, .colours = colours};
    per_view_forward(&in, V, C, P, begin, end, params, anti_alias_pooling, pooled, rgb, NULL, saved);
}

/* From world points (P, 3) projected here, as ibrnet_render_points; num_views (P) out as well. */
void ibrnet_per_view_forward_points(const float *points, const float *target_center, const float *K,
                                    const float *cam_from_world, const float *source_centers, const float *images,
                                    int64_t H, int64_t W, const float *features, int64_t h, int64_t w, int64_t V,
                                    int64_t C, int64_t P, int64_t begin, int64_t end, const float *params,
                                    int anti_alias_pooling, float *pooled, float *rgb, float *num_views,
                                    float *saved) {
    const struct sample_views in = {.points = points, .target_center = target_center, .K = K,
                                    .cam_from_world = cam_from_world, .source_centers = source_centers,
                                    .images = images, .features = features, .H = H, .W = W, .h = h, .w = w};
    per_view_forward(&in, V, C, P, begin, end, params, anti_alias_pooling, pooled, rgb, num_views, saved);
}

/* Training, backward of ibrnet_per_view_forward(_points), from its `saved` activations (whose scratch rows
   it overwrites): grad_pooled (P, 65) and grad_rgb (P, 3) in; out, for the samples begin..end-1: either
   grad_feat_in (V, C, P) (from arrays) or, when grad_features is not NULL (from points), the feature
   channels' gradients added to grad_features (V, h, w, C − 3) channels-last through the bilinear sampling;
   grad_colours (V, 3, P) unless NULL; the parameters' gradients from those samples added to grad_params
   (the packed layout; geometry_fc's part untouched). Returns 0, or -1 when a buffer cannot be allocated. */
int ibrnet_per_view_backward(int64_t V, int64_t C, int64_t P, int64_t begin, int64_t end, const float *params,
                             int anti_alias_pooling, const float *grad_pooled, const float *grad_rgb,
                             float *grad_feat_in, float *grad_colours, float *grad_features, int64_t h, int64_t w,
                             float *grad_params, float *saved) {
    struct weights p, pt, gp;
    const int64_t size = unpack((float *)params, (int)C, &p);  /* read only */
    unpack(grad_params, (int)C, &gp);
    float *transposed = malloc(sizeof(float) * size), *grad_tile = malloc(sizeof(float) * 68 * TILE);
    float *grad_colour_tile = grad_colours ? malloc(sizeof(float) * V * 3 * TILE) : NULL;
    struct tile s;
    struct tile_gradients d = {0};
    struct gradients g = {0};
    int status = transposed && grad_tile && (grad_colour_tile || !grad_colours) ? 0 : -1;
    if (status == 0) status = tile_gradients_alloc(&d, (int)V, (int)C);
    if (status == 0) status = gradients_alloc(&g, &p);
    if (status == 0) {
        unpack(transposed, (int)C, &pt);
        for (int l = 0; l < LAYERS; ++l)
            for (int o = 0; o < p.out[l]; ++o)
                for (int k = 0; k < p.in[l]; ++k) pt.w[l][k * p.out[l] + o] = p.w[l][o * p.in[l] + k];
    }
    for (int64_t start = begin; status == 0 && start < end; start += TILE) {
        const int n = end - start < TILE ? (int)(end - start) : TILE;
        tile_layout(&s, (int)V, (int)C, 1, saved + start / TILE * tile_floats((int)V, (int)C, 1));
        gather_columns(grad_tile, grad_pooled, 65, start, n);
        gather_columns(grad_tile + 65 * TILE, grad_rgb, 3, start, n);
        tile_backward(&p, &pt, &g, &s, &d, grad_tile, grad_tile + 65 * TILE, anti_alias_pooling, grad_colour_tile);
        for (int v = 0; v < V; ++v) {
            if (grad_features) {
                const float *grid = s.grid + v * 2 * TILE;
                for (int t = 0; t < n; ++t)
                    bilinear_backward(grad_features + v * h * w * (C - 3), h, w, (int)C - 3, grid[t], grid[TILE + t],
                                      d.feat + (v * C + 3) * TILE + t);
            } else {
                scatter_rows(d.feat + v * C * TILE, grad_feat_in + v * C * P, (int)C, P, start, n);
            }
            if (grad_colours) scatter_rows(grad_colour_tile + v * 3 * TILE, grad_colours + v * 3 * P, 3, P, start, n);
        }
    }
    if (status == 0) gradients_add_to(&g, &p, &gp);
    free(transposed), free(grad_tile), free(grad_colour_tile), free(d.buffer), free(g.buffer);
    return status;
}
