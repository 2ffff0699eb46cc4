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
// y [n x out] (of y_type) = x [n x in] · w [out x in]^T + beta · y
void gemm_bf16(cublasHandle_t h, const uint16_t* x, const uint16_t* w, void* y, cudaDataType_t y_type, int n,
               int in, int out, float beta) {
    const float alpha = 1.f;
    CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x,
                              CUDA_R_16BF, in, &beta, y, y_type, out, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
}
}  // namespace

Gemm::Gemm() : workspace_(kWorkspaceBytes) {
    const std::lock_guard<std::recursive_mutex> no_capture_meanwhile(capture_exclusion());
    cublasHandle_t h;
    CUBLAS_CHECK(cublasCreate(&h));
    handle_ = h;
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
}

Gemm::~Gemm() {
    if (!handle_) return;
    const std::lock_guard<std::recursive_mutex> no_capture_meanwhile(capture_exclusion());
    cublasDestroy(H(handle_));
}

void Gemm::bind(void* stream) {
    CUBLAS_CHECK(cublasSetStream(H(handle_), as_stream(stream)));
    CUBLAS_CHECK(cublasSetWorkspace(H(handle_), workspace_.get(), workspace_.bytes()));
}

void Gemm::run_f32_out(const uint16_t* x, const uint16_t* w, float* y, int n, int in, int out,
                       bool accumulate) {
    gemm_bf16(H(handle_), x, w, y, CUDA_R_32F, n, in, out, accumulate ? 1.f : 0.f);
}

void Gemm::run_bf16_out(const uint16_t* x, const uint16_t* w, uint16_t* y, int n, int in, int out) {
    gemm_bf16(H(handle_), x, w, y, CUDA_R_16BF, n, in, out, 0.f);
}

}  // namespace kvw::cuda
