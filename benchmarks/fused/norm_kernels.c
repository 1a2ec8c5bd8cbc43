/* Fused single-thread CPU kernels for the seed model's hand-written step: an experiment
 * (benchmarks/fused_norm.py), not part of aelab. Row-major (n, c) float arrays.
 * Build: cc -O3 -march=native -fno-math-errno -fno-trapping-math -shared -fPIC
 * (-fno-trapping-math lets the compiler turn the ReLU mask into a vector select; without it the
 * masked loops stay scalar and branchy: 0.53 ms instead of 0.03 ms at 128 x 784). */
#include <math.h>
#define R restrict

/* Training-mode BatchNorm over the rows of z (batch statistics, running statistics updated as
 * torch does: momentum, unbiased variance), then ReLU when relu != 0: z into y. work: 4c doubles (both kernels). */
void bn_forward(const float *R z, long n, long c, const float *R gamma, const float *R beta,
                float *R running_mean, float *R running_var, double momentum, double eps,
                float *R y, float *R save_mean, float *R save_invstd, int relu, double *R work) {
    double *R s = work, *R q = work + c;
    for (long j = 0; j < c; j++) { s[j] = 0; q[j] = 0; }
    for (long i = 0; i < n; i++) {          /* shifted by row 0: one pass, no cancellation */
        const float *R r = z + i * c;
        for (long j = 0; j < c; j++) { double v = (double)r[j] - z[j]; s[j] += v; q[j] += v * v; }
    }
    float *R scale = (float *)(work + 2 * c), *R shift = scale + c;
    for (long j = 0; j < c; j++) {
        double d = s[j] / n, mean = z[j] + d, var_sum = q[j] - s[j] * d;
        if (var_sum < 0) var_sum = 0;
        double invstd = 1.0 / sqrt(var_sum / n + eps);
        save_mean[j] = (float)mean; save_invstd[j] = (float)invstd;
        running_mean[j] = (float)((1 - momentum) * running_mean[j] + momentum * mean);
        running_var[j] = (float)((1 - momentum) * running_var[j] + momentum * var_sum / (n - 1));
        scale[j] = (float)(invstd * gamma[j]);
        shift[j] = (float)(beta[j] - mean * invstd * gamma[j]);
    }
    for (long i = 0; i < n; i++) {
        const float *R r = z + i * c; float *R o = y + i * c;
        if (relu) for (long j = 0; j < c; j++) { float v = r[j] * scale[j] + shift[j]; o[j] = v > 0 ? v : 0; }
        else for (long j = 0; j < c; j++) o[j] = r[j] * scale[j] + shift[j];
    }
}

/* From g, the gradient at y: the ReLU mask (from y), BatchNorm's backward pass (dz, dgamma, dbeta)
 * and the Linear bias gradient (the column sums of dz), in two passes. */
static inline __attribute__((always_inline)) void backward(
        const float *R g, const float *R y, const float *R z, long n, long c,
        const float *R mean, const float *R invstd, const float *R gamma, const int relu,
        float *R dz, float *R dgamma, float *R dbeta, float *R dbias, double *R work) {
    double *R sg = work, *R sgx = work + c;
    for (long j = 0; j < c; j++) { sg[j] = 0; sgx[j] = 0; }
    for (long i = 0; i < n; i++) {
        const float *R gr = g + i * c, *R yr = y + i * c, *R zr = z + i * c;
        for (long j = 0; j < c; j++) {
            float gv = relu ? (yr[j] > 0 ? gr[j] : 0.0f) : gr[j];
            sg[j] += gv; sgx[j] += (double)(gv * (zr[j] - mean[j]));
        }
    }
    float *R a = (float *)(work + 2 * c), *R b = a + c, *R d = b + c, *R acc = d + c;
    for (long j = 0; j < c; j++) {
        double is = invstd[j];
        dbeta[j] = (float)sg[j]; dgamma[j] = (float)(sgx[j] * is);
        a[j] = (float)(gamma[j] * is);
        b[j] = (float)(gamma[j] * is * is * is * sgx[j] / n);
        d[j] = (float)(gamma[j] * is * sg[j] / n);
        acc[j] = 0;
    }
    for (long i = 0; i < n; i++) {
        const float *R gr = g + i * c, *R yr = y + i * c, *R zr = z + i * c; float *R o = dz + i * c;
        for (long j = 0; j < c; j++) {
            float gv = relu ? (yr[j] > 0 ? gr[j] : 0.0f) : gr[j];
            float v = a[j] * gv - d[j] - (zr[j] - mean[j]) * b[j];
            o[j] = v; acc[j] += v;
        }
    }
    for (long j = 0; j < c; j++) dbias[j] = acc[j];
}

void bn_backward(const float *R g, const float *R y, const float *R z, long n, long c,
                 const float *R mean, const float *R invstd, const float *R gamma, int relu,
                 float *R dz, float *R dgamma, float *R dbeta, float *R dbias, double *R work) {
    if (relu) backward(g, y, z, n, c, mean, invstd, gamma, 1, dz, dgamma, dbeta, dbias, work);
    else backward(g, y, z, n, c, mean, invstd, gamma, 0, dz, dgamma, dbeta, dbias, work);
}

/* Rows idx of a uint8 (N, d) array divided by 255 (as ToTensor) into out (n, d): the batch. */
void gather_u8(const unsigned char *R src, const long *R idx, long n, long d, float *R out) {
    for (long i = 0; i < n; i++) {
        const unsigned char *R s = src + idx[i] * d; float *R o = out + i * d;
        for (long j = 0; j < d; j++) o[j] = s[j] / 255.0f;
    }
}

/* diff = (x_hat - x) * scale over m values; returns sum((x_hat - x)^2): the MSE and its gradient. */
double mse_grad(const float *R xh, const float *R x, long m, float scale, float *R diff) {
    double total = 0; float acc[16] = {0};
    long j = 0;
    for (; j + 16 <= m; j += 16)
        for (int k = 0; k < 16; k++) { float e = xh[j + k] - x[j + k]; acc[k] += e * e; diff[j + k] = e * scale; }
    for (; j < m; j++) { float e = xh[j] - x[j]; total += e * e; diff[j] = e * scale; }
    for (int k = 0; k < 16; k++) total += acc[k];
    return total;
}
