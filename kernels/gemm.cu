// Matrix products through cuBLAS: bf16 operands, fp32 accumulation. Row-major y[n x out] = x[n x in] · W^T
// is, in cuBLAS's column-major terms, y^T (out x n) = W (as W^T stored [in x out], transposed) · x^T.
#include <cublas_v2.h>

#include "common.cuh"
#include "cuda_ops.h"

#define CUBLAS_CHECK(call)                                                                  \
    do {                                                                                    \
        const cublasStatus_t kvw_st_ = (call);                                              \
        if (kvw_st_ != CUBLAS_STATUS_SUCCESS)                                               \
            throw ::kvw::Error(std::string("kernels/gemm.cu:") + std::to_string(__LINE__) + \
                               ": " #call " failed: " + cublasGetStatusString(kvw_st_));    \
    } while (0)

namespace kvw::cuda {

namespace {
constexpr size_t kWorkspaceBytes = 32u
                                   << 20;  // fixed workspace: cuBLAS must not allocate during graph capture
cublasHandle_t H(void* h) {
    return static_cast<cublasHandle_t>(h);
}
}  // namespace

Gemm::Gemm() : workspace_(kWorkspaceBytes) {
    cublasHandle_t h;
    CUBLAS_CHECK(cublasCreate(&h));
    handle_ = h;
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
}

Gemm::~Gemm() {
    if (handle_) cublasDestroy(H(handle_));
}

void Gemm::bind(void* stream) {
    CUBLAS_CHECK(cublasSetStream(H(handle_), as_stream(stream)));
    CUBLAS_CHECK(cublasSetWorkspace(H(handle_), workspace_.get(), workspace_.bytes()));
}

void Gemm::run_f32_out(const uint16_t* x, const uint16_t* w, float* y, int n, int in, int out) {
    const float alpha = 1.f, beta = 0.f;
    CUBLAS_CHECK(cublasGemmEx(H(handle_), CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x,
                              CUDA_R_16BF, in, &beta, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
}

void Gemm::run_bf16_out(const uint16_t* x, const uint16_t* w, uint16_t* y, int n, int in, int out) {
    const float alpha = 1.f, beta = 0.f;
    CUBLAS_CHECK(cublasGemmEx(H(handle_), CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x,
                              CUDA_R_16BF, in, &beta, y, CUDA_R_16BF, out, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
}

}  // namespace kvw::cuda
