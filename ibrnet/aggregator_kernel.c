/* IBRNet's aggregator, forward only, in C for CPU rendering (float32).

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
   sigma (P), the density. */

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

/* w_v /= Σ_u w_u + 1e-8 over the views; w (V, TILE). */
static void normalise_over_views(float *w, int V) {
    float total[TILE] = {0};
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) total[t] += w[v * TILE + t];
    for (int v = 0; v < V; ++v)
        for (int t = 0; t < TILE; ++t) w[v * TILE + t] /= total[t] + 1e-8f;
}

/* Copies rows (rows, TILE) of a (rows, P) array from column `start`, n valid columns, zero padding. */
static void gather_rows(float *tile, const float *source, int rows, int64_t P, int64_t start, int n) {
    for (int c = 0; c < rows; ++c) {
        memcpy(tile + c * TILE, source + c * P + start, n * sizeof(float));
        memset(tile + c * TILE + n, 0, (TILE - n) * sizeof(float));
    }
}

/* Where the per-view inputs of the samples come from: either arrays made by ibrnet/projector.py
   (feat_in (V, C, P), ray_diff (V, 4, P), mask (V, P)), or world points (P, 3) projected here into the
   source views, with the projector's math (see project_tile). */
struct sample_views {
    const float *feat_in, *ray_diff, *mask;
    const float *points, *target_center, *K, *cam_from_world, *source_centers, *images, *features;
    int64_t H, W, h, w;
};

/* grid_sample(align_corners=True, zero padding) at grid coordinates (gx, gy) of one channel-major image
   (channels, height, width) into out[c * TILE] (channel stride TILE), or of a channels-last one
   (height, width, channels) when channels_last. Corners outside the image contribute nothing. */
static void bilinear(const float *image, int64_t height, int64_t width, int channels, int channels_last,
                     float gx, float gy, float *out) {
    const float ix = (gx + 1.0f) / 2.0f * (float)(width - 1), iy = (gy + 1.0f) / 2.0f * (float)(height - 1);
    float sum[channels];
    for (int c = 0; c < channels; ++c) sum[c] = 0.0f;
    if (ix > -1.0f && ix < (float)width && iy > -1.0f && iy < (float)height) {  /* false for NaN too */
        const float x0 = __builtin_floorf(ix), y0 = __builtin_floorf(iy);
        const float corner_x[4] = {x0, x0 + 1.0f, x0, x0 + 1.0f}, corner_y[4] = {y0, y0, y0 + 1.0f, y0 + 1.0f};
        const float weight[4] = {(x0 + 1.0f - ix) * (y0 + 1.0f - iy), (ix - x0) * (y0 + 1.0f - iy),
                                 (x0 + 1.0f - ix) * (iy - y0), (ix - x0) * (iy - y0)};
        for (int corner = 0; corner < 4; ++corner) {
            const int64_t x = (int64_t)corner_x[corner], y = (int64_t)corner_y[corner];
            if (x < 0 || x >= width || y < 0 || y >= height) continue;
            if (channels_last) {
                const float *pixel = image + (y * width + x) * channels;
                for (int c = 0; c < channels; ++c) sum[c] += weight[corner] * pixel[c];
            } else {
                for (int c = 0; c < channels; ++c) sum[c] += weight[corner] * image[(c * height + y) * width + x];
            }
        }
    }
    for (int c = 0; c < channels; ++c) out[c * TILE] = sum[c];
}

/* The projector's math (ibrnet/projector.py) for the tile's samples in view v: camera point, pixel
   (depth clamped to 1e-8, coordinates to ±1e6), mask = inside [0, W−1]×[0, H−1] and in front, colour and
   feature by bilinear sampling at the same normalised grid point, and the ray-direction difference (unit
   d_tar − d_src and the cosine d_tar·d_src, d = unit vector from the point to a camera centre).
   points_tile (3, TILE): the tile's points, padding columns repeating the last one. */
static void project_tile(const struct sample_views *in, int v, int C, const float *restrict points_tile, int n,
                         float *restrict feat, float *restrict rd, float *restrict m) {
    float T[12], K[9], centre[3], target[3];  /* local copies: the loop below reads them from registers */
    memcpy(T, in->cam_from_world + v * 16, sizeof T);
    memcpy(K, in->K + v * 9, sizeof K);
    memcpy(centre, in->source_centers + v * 3, sizeof centre);
    memcpy(target, in->target_center, sizeof target);
    const float last_u = (float)(in->W - 1), last_v = (float)(in->H - 1);
    const float grid_x = 2.0f / (in->W - 1 > 1 ? last_u : 1.0f), grid_y = 2.0f / (in->H - 1 > 1 ? last_v : 1.0f);
    const float *px = points_tile, *py = px + TILE, *pz = py + TILE;
    float gx[TILE], gy[TILE];
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

/* The tile's per-view inputs. Padding columns (t >= n) are never stored and no view sees them: zeros
   from arrays; the last point repeated when projecting (finite values, mask 0). */
static void fill_tile(const struct sample_views *in, int V, int C, int64_t P, int64_t start, int n, float *feat,
                      float *rd, float *m) {
    float points_tile[3 * TILE];
    if (!in->feat_in)
        for (int t = 0; t < TILE; ++t)
            for (int i = 0; i < 3; ++i) points_tile[i * TILE + t] = in->points[(start + (t < n ? t : n - 1)) * 3 + i];
    for (int v = 0; v < V; ++v) {
        if (in->feat_in) {
            gather_rows(feat + v * C * TILE, in->feat_in + v * C * P, C, P, start, n);
            gather_rows(rd + v * 4 * TILE, in->ray_diff + v * 4 * P, 4, P, start, n);
            gather_rows(m + v * TILE, in->mask + v * P, 1, P, start, n);
        } else {
            project_tile(in, v, C, points_tile, n, feat + v * C * TILE, rd + v * 4 * TILE, m + v * TILE);
        }
    }
}

/* Per-view layers, pooling and geometry_fc for all P samples -> geometry (P, 16), rgb (P, 3) and the
   number of views that see each sample (P). */
static int per_view_part(const struct sample_views *in, int V, int C, int64_t P, const float *params,
                         int anti_alias_pooling, float *geometry, float *rgb, float *num_views) {
    /* the packed parameters, in the order of aggregator_native.packed_parameters */
    const float *dir1_w = params, *dir1_b = dir1_w + 16 * 4;
    const float *dir2_w = dir1_b + 16, *dir2_b = dir2_w + C * 16;
    const float *base1_w = dir2_b + C, *base1_b = base1_w + 64 * 3 * C;
    const float *base2_w = base1_b + 64, *base2_b = base2_w + 32 * 64;
    const float *vis1_w = base2_b + 32, *vis1_b = vis1_w + 32 * 32;
    const float *vis2_w = vis1_b + 32, *vis2_b = vis2_w + 33 * 32;
    const float *visb1_w = vis2_b + 33, *visb1_b = visb1_w + 32 * 32;
    const float *visb2_w = visb1_b + 32, *visb2_b = visb2_w + 32;
    const float *rgb1_w = visb2_b + 1, *rgb1_b = rgb1_w + 16 * 37;
    const float *rgb2_w = rgb1_b + 16, *rgb2_b = rgb2_w + 8 * 16;
    const float *rgb3_w = rgb2_b + 8, *rgb3_b = rgb3_w + 8;
    const float *geo1_w = rgb3_b + 1, *geo1_b = geo1_w + 64 * 65;
    const float *geo2_w = geo1_b + 64, *geo2_b = geo2_w + 16 * 64;
    const float s = geo2_b[16] < 0.0f ? -geo2_b[16] : geo2_b[16]; /* |s| of the pooling weights */

    /* per tile: feat (V, C), x (V, 32), rd (V, 4), colour (V, 3), m / w / vis / logit (V); scratch rows */
    const int scratch_rows = 2 * C + 64 + 64 + 65 + 32 + 16 + 8;
    float *buffer = malloc(sizeof(float) * TILE * (V * (C + 32 + 4 + 3 + 4) + scratch_rows));
    if (!buffer) return -1;
    float *feat = buffer, *x = feat + V * C * TILE, *rd = x + V * 32 * TILE, *colour = rd + V * 4 * TILE;
    float *m = colour + V * 3 * TILE, *w = m + V * TILE, *vis = w + V * TILE, *logit = vis + V * TILE;
    float *mean = logit + V * TILE, *var = mean + C * TILE, *per_sample = var + C * TILE;
    float *h64 = per_sample + 64 * TILE, *cat = h64 + 64 * TILE, *h32 = cat + 65 * TILE;
    float *h16 = h32 + 32 * TILE, *h8 = h16 + 16 * TILE;

    for (int64_t start = 0; start < P; start += TILE) {
        const int n = P - start < TILE ? (int)(P - start) : TILE;
        fill_tile(in, V, C, P, start, n, feat, rd, m);
        for (int v = 0; v < V; ++v) memcpy(colour + v * 3 * TILE, feat + v * C * TILE, 3 * TILE * sizeof(float));
        for (int t = 0; t < n; ++t) num_views[start + t] = 0.0f;
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < n; ++t) num_views[start + t] += m[v * TILE + t];
        /* feat += ray_dir_fc(ray_diff) */
        for (int v = 0; v < V; ++v) {
            float *f = feat + v * C * TILE;
            dense(dir1_w, 4, dir1_b, NULL, 16, 4, rd + v * 4 * TILE, h16, ELU);
            dense(dir2_w, 16, dir2_b, NULL, C, 16, h16, mean, ELU); /* mean: scratch (C, TILE) here */
            for (int i = 0; i < C * TILE; ++i) f[i] += mean[i];
        }
        /* pooling weights: anti-alias exp(|s|(cos − 1)) minus their minimum over views, masked, normalised */
        if (anti_alias_pooling) {
            float least[TILE];
            for (int t = 0; t < TILE; ++t) least[t] = 3.4e38f;
            for (int v = 0; v < V; ++v)
                for (int t = 0; t < TILE; ++t) {
                    float a = fast_exp(s * (rd[(v * 4 + 3) * TILE + t] - 1.0f));
                    w[v * TILE + t] = a;
                    least[t] = a < least[t] ? a : least[t];
                }
            for (int v = 0; v < V; ++v)
                for (int t = 0; t < TILE; ++t) w[v * TILE + t] = (w[v * TILE + t] - least[t]) * m[v * TILE + t];
        } else {
            memcpy(w, m, V * TILE * sizeof(float));
        }
        normalise_over_views(w, V);
        /* base_fc([mean, var, feat]): the mean/var block of its first layer once per sample */
        weighted_mean_variance(feat, w, V, C, mean, var);
        dense(base1_w, 3 * C, base1_b, NULL, 64, C, mean, per_sample, NONE);
        dense(base1_w + C, 3 * C, NULL, per_sample, 64, C, var, per_sample, NONE);
        for (int v = 0; v < V; ++v) {
            float *xv = x + v * 32 * TILE, *vis_v = vis + v * TILE, *m_v = m + v * TILE;
            dense(base1_w + 2 * C, 3 * C, NULL, per_sample, 64, C, feat + v * C * TILE, h64, ELU);
            dense(base2_w, 64, base2_b, NULL, 32, 64, h64, xv, ELU);
            /* vis_fc(x·w): rows 0..31 of its last layer give the residual, row 32 the visibility */
            for (int c = 0; c < 32; ++c)
                for (int t = 0; t < TILE; ++t) cat[c * TILE + t] = xv[c * TILE + t] * w[v * TILE + t];
            dense(vis1_w, 32, vis1_b, NULL, 32, 32, cat, h32, ELU);
            dense(vis2_w, 32, vis2_b, NULL, 32, 32, h32, cat, ELU);
            dense(vis2_w + 32 * 32, 32, vis2_b + 32, NULL, 1, 32, h32, vis_v, ELU);
            sigmoid_in_place(vis_v, TILE);
            for (int t = 0; t < TILE; ++t) vis_v[t] *= m_v[t];
            for (int i = 0; i < 32 * TILE; ++i) xv[i] += cat[i]; /* x = x + residual */
            /* vis = vis_fc2(x·vis) · mask */
            for (int c = 0; c < 32; ++c)
                for (int t = 0; t < TILE; ++t) cat[c * TILE + t] = xv[c * TILE + t] * vis_v[t];
            dense(visb1_w, 32, visb1_b, NULL, 32, 32, cat, h32, ELU);
            dense(visb2_w, 32, visb2_b, NULL, 1, 32, h32, vis_v, SIGMOID);
            for (int t = 0; t < TILE; ++t) vis_v[t] *= m_v[t];
            /* blend logit rgb_fc([x, vis, ray_diff]); -1e9 where the view does not see the sample */
            memcpy(cat, xv, 32 * TILE * sizeof(float));
            memcpy(cat + 32 * TILE, vis_v, TILE * sizeof(float));
            memcpy(cat + 33 * TILE, rd + v * 4 * TILE, 4 * TILE * sizeof(float));
            dense(rgb1_w, 37, rgb1_b, NULL, 16, 37, cat, h16, ELU);
            dense(rgb2_w, 16, rgb2_b, NULL, 8, 16, h16, h8, ELU);
            float *logit_v = logit + v * TILE;
            dense(rgb3_w, 8, rgb3_b, NULL, 1, 8, h8, logit_v, NONE);
            for (int t = 0; t < TILE; ++t) logit_v[t] = m_v[t] == 0.0f ? -1e9f : logit_v[t];
        }
        /* geometry_fc([mean, var, mean weight]) with the normalised visibilities as weights */
        normalise_over_views(vis, V);
        weighted_mean_variance(x, vis, V, 32, cat, cat + 32 * TILE);
        float *mean_weight = cat + 64 * TILE;
        for (int t = 0; t < TILE; ++t) mean_weight[t] = 0.0f;
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) mean_weight[t] += vis[v * TILE + t];
        for (int t = 0; t < TILE; ++t) mean_weight[t] /= V;
        dense(geo1_w, 65, geo1_b, NULL, 64, 65, cat, h64, ELU);
        dense(geo2_w, 64, geo2_b, NULL, 16, 64, h64, h16, ELU);
        for (int t = 0; t < n; ++t)
            for (int c = 0; c < 16; ++c) geometry[(start + t) * 16 + c] = h16[c * TILE + t];
        /* softmax over views of the logits; blend of the source colours */
        float top[TILE], total[TILE] = {0}, blend[3][TILE] = {{0}};
        for (int t = 0; t < TILE; ++t) top[t] = -3.4e38f;
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) top[t] = logit[v * TILE + t] > top[t] ? logit[v * TILE + t] : top[t];
        for (int v = 0; v < V; ++v)
            for (int t = 0; t < TILE; ++t) {
                float e = fast_exp(logit[v * TILE + t] - top[t]);
                total[t] += e;
                for (int c = 0; c < 3; ++c) blend[c][t] += e * colour[(v * 3 + c) * TILE + t];
            }
        for (int t = 0; t < n; ++t)
            for (int c = 0; c < 3; ++c) rgb[(start + t) * 3 + c] = blend[c][t] / total[t];
    }
    free(buffer);
    return 0;
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
    if (status == 0) status = per_view_part(in, (int)V, (int)C, P, params, anti_alias_pooling, geometry, rgb, num_views);
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
