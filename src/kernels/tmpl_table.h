/* A SIMD tier's kernel table: the portable drivers (gemm.c, attention.c, attention_backward.c)
 * bound to the tier's micro-kernel and row operations, plus its vector kernels. Include after
 * simd_*.h and tiers.h; the layer names the table (ISA_NAME, ISA_TABLE). Every entry is set;
 * an entry left out would be filled from the scalar table by the dispatch. */

static size_t ISA(t_scratch_floats)(int max_t, int max_c)
{
    size_t g = mae_gemm_scratch_floats(&ISA(gemm), max_c);
    size_t a = mae_attention_scratch_floats(&ISA(attn), max_t, max_c);
    return g > a ? g : a;
}

static size_t ISA(t_pack_floats)(int N, int K)
{
    return mae_gemm_pack_floats(&ISA(gemm), N, K);
}

static void ISA(t_pack)(float *dst, const float *W, int N, int K)
{
    mae_gemm_pack(&ISA(gemm), dst, W, N, K);
}

static void ISA(t_unpack)(float *W, const float *packed, int N, int K)
{
    mae_gemm_unpack(&ISA(gemm), W, packed, N, K);
}

static void ISA(t_linear)(const mae_exec *ex, float *out, const float *A, const float *wp,
                          const float *bias, const float *residual, int M, int N, int K, int act)
{
    mae_gemm_linear(&ISA(gemm), ex, out, A, wp, bias, residual, M, N, K, act);
}

static void ISA(t_attention)(const mae_exec *ex, float *out, float *probs, const float *qkv,
                             int B, int T, int C, int H)
{
    mae_attention_run(&ISA(attn), ex, out, probs, qkv, B, T, C, H, MAE_FLASH_MIN_T);
}

static void ISA(t_matmul_nn)(const mae_exec *ex, float *C, const float *A, const float *B,
                             int M, int N, int K, int accumulate)
{
    mae_gemm_nn(&ISA(gemm), ex, C, A, B, M, N, K, accumulate);
}

static void ISA(t_matmul_tn)(const mae_exec *ex, float *C, const float *A, const float *B,
                             int M, int N, int K, int accumulate)
{
    mae_gemm_tn(&ISA(gemm), ex, C, A, B, M, N, K, accumulate);
}

static size_t ISA(t_backward_scratch_floats)(int max_t, int max_c)
{
    size_t g = mae_gemm_backward_scratch_floats(&ISA(gemm), max_c, max_c);
    size_t a = mae_attention_backward_scratch_floats(&ISA(attn), max_t, max_c);
    return g > a ? g : a;
}

static void ISA(t_attention_backward)(const mae_exec *ex, float *dqkv, const float *dout,
                                      const float *qkv, const float *probs, int B, int T, int C, int H)
{
    mae_attention_backward_run(&ISA(attn), ex, dqkv, dout, qkv, probs, B, T, C, H);
}

const mae_attn_isa ISA(attn) = {
    &ISA(gemm), ISA(scale_colmax), ISA(exp_colsum), ISA(scale_cols), ISA(softmax_backward_row),
};

const mae_kernels ISA_TABLE = {
    .name = ISA_NAME,
    .scratch_floats = ISA(t_scratch_floats),
    .pack_floats = ISA(t_pack_floats),
    .pack = ISA(t_pack),
    .linear = ISA(t_linear),
    .attention = ISA(t_attention),
    .layernorm = ISA(layernorm),
    .gelu = ISA(gelu),
    .add = ISA(add),
    .matmul_nn = ISA(t_matmul_nn),
    .matmul_tn = ISA(t_matmul_tn),
    .backward_scratch_floats = ISA(t_backward_scratch_floats),
    .layernorm_backward = ISA(layernorm_backward),
    .gelu_backward = ISA(gelu_backward),
    .attention_backward = ISA(t_attention_backward),
    .bias_backward = ISA(bias_backward),
    .unpack = ISA(t_unpack),
    .adamw = ISA(adamw),
    .loss_patch = ISA(loss_patch),
    .loss_grad = ISA(loss_grad),
};
