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

/* Per-view layers, pooling and geometry_fc for all P samples -> geometry (P, 16) and rgb (P, 3). */
static int per_view_part(const float *feat_in, const float *ray_diff, const float *mask, int V, int C, int64_t P,
                         const float *params, int anti_alias_pooling, float *geometry, float *rgb) {
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
        /* the tile's inputs; padding columns are zeros: no view sees them, and they are never stored */
        for (int v = 0; v < V; ++v) {
            gather_rows(feat + v * C * TILE, feat_in + v * C * P, C, P, start, n);
            gather_rows(rd + v * 4 * TILE, ray_diff + v * 4 * P, 4, P, start, n);
            gather_rows(m + v * TILE, mask + v * P, 1, P, start, n);
            memcpy(colour + v * 3 * TILE, feat + v * C * TILE, 3 * TILE * sizeof(float));
        }
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
                row[i] = fast_exp(row[i] - top[i]);
                sum[i] += row[i];
            }
        }
        for (int d = 0; d < 4; ++d) {
            float *restrict out = attended + (4 * h + d) * S;
            float mean = 0.0f;
            for (int i = 0; i < S; ++i) out[i] = 0.0f;
            for (int j = 0; j < S; ++j) {
                const float value = vh[d * S + j], *restrict row = p + j * S;
                mean += value;
                for (int i = 0; i < S; ++i) out[i] += value * row[i];
            }
            mean /= S;
            for (int i = 0; i < S; ++i) out[i] = num_valid[i] > 1.0f ? out[i] / total[i] : mean;
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

/* The whole aggregator for R rays of S samples (see the top of this file). Returns 0, or -1 when a buffer
   cannot be allocated. */
int ibrnet_aggregate(const float *feat_in, const float *ray_diff, const float *mask, int64_t V, int64_t C, int64_t R,
                     int64_t S, const float *params, const float *transformer_params, const float *position,
                     int anti_alias_pooling, float *rgb, float *sigma) {
    const int64_t P = R * S;
    float *geometry = malloc(sizeof(float) * P * 16);
    float *num_valid = malloc(sizeof(float) * S);
    float *work = malloc(sizeof(float) * S * (16 * 8 + S));
    int status = geometry && num_valid && work ? 0 : -1;
    if (status == 0) status = per_view_part(feat_in, ray_diff, mask, (int)V, (int)C, P, params, anti_alias_pooling,
                                            geometry, rgb);
    for (int64_t r = 0; status == 0 && r < R; ++r) {
        for (int64_t i = 0; i < S; ++i) num_valid[i] = 0.0f;
        for (int64_t view = 0; view < V; ++view)
            for (int64_t i = 0; i < S; ++i) num_valid[i] += mask[view * P + r * S + i];
        ray_transformer(geometry + r * S * 16, position, num_valid, (int)S, transformer_params, sigma + r * S, work);
    }
    free(geometry);
    free(num_valid);
    free(work);
    return status;
}
