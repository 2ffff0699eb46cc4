// cuDNN's fused attention through the backend graph API (cudnn_sdpa.h). Two ways to describe it, tried in
// this order for each shape: cuDNN's single SDPA forward operation (9.13.1 and later), then the composite
// graph its flash engines recognise (Q·Kᵀ, scale, max, subtract, exp, sum, log + add into the statistics,
// divide, P·V). Every descriptor is owned by a Desc (RAII); a plan keeps the tensors, operations and graph it
// was built from alive, as cuDNN requires.
#include "cudnn_sdpa.h"

#include <cuda_runtime.h>

#include <array>
#include <map>
#include <utility>
#include <vector>

#include "common.cuh"
#include "cuda_ops.h"

#if defined(KVW_WITH_CUDNN)
#include <cudnn.h>
#endif

namespace kvw::cuda {

#if defined(KVW_WITH_CUDNN)

namespace {

[[noreturn]] void throw_cudnn(const char* what, cudnnStatus_t s) {
    char detail[512] = {0};
    cudnnGetLastErrorString(detail, sizeof detail);
    throw Error(std::string("cuDNN: ") + what + " failed: " + cudnnGetErrorString(s) +
                (detail[0] ? std::string(" (") + detail + ")" : std::string()));
}
#define CUDNN_CHECK(call)                                               \
    do {                                                                \
        const cudnnStatus_t kvw_s_ = (call);                            \
        if (kvw_s_ != CUDNN_STATUS_SUCCESS) throw_cudnn(#call, kvw_s_); \
    } while (0)

bool not_supported(cudnnStatus_t s) {
    return CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED;
}

// One backend descriptor, destroyed with its owner.
class Desc {
  public:
    Desc() = default;
    explicit Desc(cudnnBackendDescriptorType_t type) { CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_)); }
    ~Desc() {
        if (d_) cudnnBackendDestroyDescriptor(d_);
    }
    Desc(Desc&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
    Desc& operator=(Desc&& o) noexcept {
        std::swap(d_, o.d_);
        return *this;
    }
    Desc(const Desc&) = delete;
    Desc& operator=(const Desc&) = delete;
    cudnnBackendDescriptor_t get() const { return d_; }
    cudnnBackendDescriptor_t* addr() { return &d_; }

    template <typename T>
    Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const T* values,
              int64_t count = 1) {
        CUDNN_CHECK(cudnnBackendSetAttribute(d_, name, type, count, values));
        return *this;
    }
    Desc& set_desc(cudnnBackendAttributeName_t name, const Desc& other) {
        cudnnBackendDescriptor_t o = other.get();
        return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, &o);
    }
    Desc& set_type(cudnnBackendAttributeName_t name, cudnnDataType_t t) {
        return set(name, CUDNN_TYPE_DATA_TYPE, &t);
    }
    // Finalize, returning the status (NOT_SUPPORTED lets a caller try another way).
    cudnnStatus_t try_finalize() { return cudnnBackendFinalize(d_); }
    Desc& finalize() {
        CUDNN_CHECK(cudnnBackendFinalize(d_));
        return *this;
    }

  private:
    cudnnBackendDescriptor_t d_ = nullptr;
};

// A tensor: dims and strides of 4 (batch 1, heads, rows, columns), 16-byte aligned.
Desc tensor(int64_t uid, cudnnDataType_t type, const std::array<int64_t, 4>& dims,
            const std::array<int64_t, 4>& strides, bool is_virtual = false, bool by_value = false) {
    Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t alignment = 16;
    t.set_type(CUDNN_ATTR_TENSOR_DATA_TYPE, type)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims.data(), 4)
        .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides.data(), 4)
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &uid)
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &alignment);
    const bool yes = true;
    if (is_virtual) t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &yes);
    if (by_value) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, &yes);
    return std::move(t.finalize());
}

// The I/O tensors' unique ids (the variant pack's keys).
enum : int64_t { kQ = 1, kK = 2, kV = 3, kO = 4, kScale = 5, kStats = 6 };

}  // namespace

struct CudnnSdpa::Plan {
    std::vector<Desc> keep;  // tensors, operation descriptors, operations, graph: alive while the plan is
    Desc plan;
    int64_t workspace = 0;
    std::string how;
};

struct CudnnSdpa::Impl {
    cudnnHandle_t handle = nullptr;
    std::map<decltype(SdpaShape{}.key()), std::unique_ptr<Plan>> plans;
    DeviceBuffer workspace;
    cudaStream_t stream = nullptr;
    bool stream_set = false;
};

namespace {

// The graph's finalized operations -> a plan from the first engine configuration heuristics mode A offers
// that finalizes; false when the graph or none of its configurations is supported.
bool build_plan(cudnnHandle_t handle, std::vector<Desc>& keep,
                const std::vector<cudnnBackendDescriptor_t>& ops, CudnnSdpa::Plan& out) {
    Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops.data(),
              static_cast<int64_t>(ops.size()));
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &handle);
#pragma GCC diagnostic pop
    cudnnStatus_t s = graph.try_finalize();
    if (not_supported(s)) return false;
    if (s != CUDNN_STATUS_SUCCESS) throw_cudnn("operation graph finalize", s);
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph)
        .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, &mode);
    s = heur.try_finalize();
    if (not_supported(s)) return false;
    if (s != CUDNN_STATUS_SUCCESS) throw_cudnn("engine heuristics finalize", s);
    int64_t n = 0;
    CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &n, nullptr));
    std::vector<Desc> configs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < n; ++i) {
        configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        raw.push_back(configs.back().get());
    }
    int64_t returned = 0;
    if (n > 0)
        CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                             CUDNN_TYPE_BACKEND_DESCRIPTOR, n, &returned, raw.data()));
    for (int64_t i = 0; i < returned; ++i) {
        Desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        plan.set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, configs[static_cast<size_t>(i)]);
        s = plan.try_finalize();
        if (not_supported(s)) continue;
        if (s != CUDNN_STATUS_SUCCESS) throw_cudnn("execution plan finalize", s);
        int64_t count = 0;
        CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                             CUDNN_TYPE_INT64, 1, &count, &out.workspace));
        out.plan = std::move(plan);
        out.how += ", engine configuration " + std::to_string(i) + " of " + std::to_string(returned);
        keep.push_back(std::move(graph));
        keep.push_back(std::move(heur));
        for (Desc& c : configs) keep.push_back(std::move(c));
        return true;
    }
    return false;
}

struct IoStrides {
    std::array<int64_t, 4> q, k, v, o;
};
// The rows' log-sum-exp: [1, heads, queries, 1], fp32, packed.
std::array<int64_t, 4> stats_dims(const SdpaShape& s) {
    return {1, s.heads, s.queries, 1};
}
std::array<int64_t, 4> stats_strides(const SdpaShape& s) {
    return {static_cast<int64_t>(s.heads) * s.queries, s.queries, 1, 1};
}
IoStrides io_strides(const SdpaShape& s) {
    const int64_t H = s.heads, dqk = s.dqk, dv = s.dv;
    return IoStrides{{H * s.q_rows_allocated * dqk, s.q_rows_allocated * dqk, dqk, 1},
                     {H * s.k_rows_allocated * dqk, s.k_rows_allocated * dqk, dqk, 1},
                     {H * s.k_rows_allocated * dv, s.k_rows_allocated * dv, dv, 1},
                     // o: [queries][heads * dv] rows, viewed as [1, heads, queries, dv]
                     {s.queries * H * dv, dv, H * dv, 1}};
}

#if CUDNN_VERSION >= 91301
// cuDNN's single SDPA forward operation: no virtual tensors, K as stored; the statistics when asked.
bool unified_plan(cudnnHandle_t handle, const SdpaShape& s, CudnnSdpa::Plan& out) {
    if (cudnnGetVersion() < 91301) return false;
    const IoStrides st = io_strides(s);
    const int64_t H = s.heads;
    std::vector<Desc> keep;
    keep.push_back(tensor(kQ, CUDNN_DATA_BFLOAT16, {1, H, s.queries, s.dqk}, st.q));
    keep.push_back(tensor(kK, CUDNN_DATA_BFLOAT16, {1, H, s.keys, s.dqk}, st.k));
    keep.push_back(tensor(kV, CUDNN_DATA_BFLOAT16, {1, H, s.keys, s.dv}, st.v));
    keep.push_back(tensor(kO, CUDNN_DATA_BFLOAT16, {1, H, s.queries, s.dv}, st.o));
    keep.push_back(tensor(kScale, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true));
    if (s.stats) keep.push_back(tensor(kStats, CUDNN_DATA_FLOAT, stats_dims(s), stats_strides(s)));
    Desc op(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR);
    op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, keep[0])
        .set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, keep[1])
        .set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, keep[2])
        .set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, keep[3])
        .set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, keep[4]);
    if (s.stats) op.set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_STATSDESC, keep[5]);
    const cudnnStatus_t fs = op.try_finalize();
    if (not_supported(fs)) return false;
    if (fs != CUDNN_STATUS_SUCCESS) throw_cudnn("SDPA operation finalize", fs);
    const std::vector<cudnnBackendDescriptor_t> ops = {op.get()};
    keep.push_back(std::move(op));
    out.how = "unified SDPA op";
    if (!build_plan(handle, keep, ops, out)) return false;
    out.keep = std::move(keep);
    return true;
}
#endif

// The composite graph (Q·Kᵀ, scale, softmax with its statistics branch, P·V) that cuDNN's flash engines fuse.
bool composite_plan(cudnnHandle_t handle, const SdpaShape& s, CudnnSdpa::Plan& out) {
    const IoStrides st = io_strides(s);
    const int64_t H = s.heads, Sq = s.queries, Sk = s.keys;
    const std::array<int64_t, 4> scores{1, H, Sq, Sk}, score_strides{H * Sq * Sk, Sq * Sk, Sk, 1},
        rows{1, H, Sq, 1}, row_strides{H * Sq, Sq, 1, 1};
    std::vector<Desc> keep;
    auto add = [&](Desc d) -> const Desc& {
        keep.push_back(std::move(d));
        return keep.back();
    };
    // keep is reserved so that references to its elements stay valid while the graph is built
    keep.reserve(64);
    const Desc& q = add(tensor(kQ, CUDNN_DATA_BFLOAT16, {1, H, Sq, s.dqk}, st.q));
    // Kᵀ: K's memory seen as [1, H, dqk, keys] (the last two strides swapped)
    const Desc& kt = add(tensor(kK, CUDNN_DATA_BFLOAT16, {1, H, s.dqk, Sk}, {st.k[0], st.k[1], 1, st.k[2]}));
    const Desc& v = add(tensor(kV, CUDNN_DATA_BFLOAT16, {1, H, Sk, s.dv}, st.v));
    const Desc& o = add(tensor(kO, CUDNN_DATA_BFLOAT16, {1, H, Sq, s.dv}, st.o));
    const Desc& scale = add(tensor(kScale, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true));
    int64_t uid = 100;
    auto virt = [&](cudnnDataType_t type, const std::array<int64_t, 4>& dims,
                    const std::array<int64_t, 4>& strides) -> const Desc& {
        return add(tensor(++uid, type, dims, strides, true));
    };
    const Desc& s1 = virt(CUDNN_DATA_FLOAT, scores, score_strides);
    const Desc& s2 = virt(CUDNN_DATA_FLOAT, scores, score_strides);
    const Desc& mx = virt(CUDNN_DATA_FLOAT, rows, row_strides);
    const Desc& s3 = virt(CUDNN_DATA_FLOAT, scores, score_strides);
    const Desc& e = virt(CUDNN_DATA_FLOAT, scores, score_strides);
    const Desc& z = virt(CUDNN_DATA_FLOAT, rows, row_strides);
    const Desc& logz = virt(CUDNN_DATA_FLOAT, rows, row_strides);
    // the statistics branch is part of the pattern the flash engines recognise; an output only when asked
    const Desc& stats = s.stats ? add(tensor(kStats, CUDNN_DATA_FLOAT, stats_dims(s), stats_strides(s)))
                                : virt(CUDNN_DATA_FLOAT, rows, row_strides);
    const Desc& p = virt(CUDNN_DATA_BFLOAT16, scores, score_strides);  // P·V's A operand: the I/O type

    auto matmul_desc = [&]() -> const Desc& {
        Desc m(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
        m.set_type(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT).finalize();
        return add(std::move(m));
    };
    auto pointwise_desc = [&](cudnnPointwiseMode_t mode) -> const Desc& {
        Desc d(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
        d.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode)
            .set_type(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_DATA_FLOAT)
            .finalize();
        return add(std::move(d));
    };
    auto reduction_desc = [&](cudnnReduceTensorOp_t op) -> const Desc& {
        Desc d(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
        d.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, &op)
            .set_type(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT)
            .finalize();
        return add(std::move(d));
    };
    std::vector<cudnnBackendDescriptor_t> ops;
    auto matmul = [&](const Desc& a, const Desc& b, const Desc& c) {
        Desc op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
        op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
            .set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
            .set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
            .set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, matmul_desc())
            .finalize();
        ops.push_back(add(std::move(op)).get());
    };
    auto pointwise = [&](cudnnPointwiseMode_t mode, const Desc& x, const Desc* b, const Desc& y) {
        Desc op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
        op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pointwise_desc(mode))
            .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
        if (b) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
        op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y).finalize();
        ops.push_back(add(std::move(op)).get());
    };
    auto reduction = [&](cudnnReduceTensorOp_t mode, const Desc& x, const Desc& y) {
        Desc op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
        op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, reduction_desc(mode))
            .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
            .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
            .finalize();
        ops.push_back(add(std::move(op)).get());
    };
    try {
        matmul(q, kt, s1);
        pointwise(CUDNN_POINTWISE_MUL, s1, &scale, s2);
        reduction(CUDNN_REDUCE_TENSOR_MAX, s2, mx);
        pointwise(CUDNN_POINTWISE_SUB, s2, &mx, s3);
        pointwise(CUDNN_POINTWISE_EXP, s3, nullptr, e);
        reduction(CUDNN_REDUCE_TENSOR_ADD, e, z);
        pointwise(CUDNN_POINTWISE_LOG, z, nullptr, logz);
        pointwise(CUDNN_POINTWISE_ADD, mx, &logz, stats);
        pointwise(CUDNN_POINTWISE_DIV, e, &z, p);
        matmul(p, v, o);
    } catch (const Error&) {
        return false;  // an operation this cuDNN cannot describe: no plan this way
    }
    out.how = "composite graph";
    if (!build_plan(handle, keep, ops, out)) return false;
    out.keep = std::move(keep);
    return true;
}

}  // namespace

bool CudnnSdpa::available(std::string* why) {
    int device = 0;
    cudaDeviceProp prop{};
    if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        if (why) *why = "no CUDA device";
        return false;
    }
    if (prop.major < 8) {
        if (why) *why = "cuDNN's fused attention needs compute capability 8.0 or later";
        return false;
    }
    if (cudnnGetVersion() < 90000) {
        if (why) *why = "cuDNN " + std::to_string(cudnnGetVersion()) + " is older than 9.0";
        return false;
    }
    return true;
}

CudnnSdpa::CudnnSdpa() : impl_(std::make_unique<Impl>()) {
    std::string why;
    if (!available(&why)) throw Error("cuDNN attention unavailable: " + why);
    const std::lock_guard<std::recursive_mutex> no_capture_meanwhile(capture_exclusion());
    CUDNN_CHECK(cudnnCreate(&impl_->handle));
}

CudnnSdpa::~CudnnSdpa() {
    if (!impl_) return;
    const std::lock_guard<std::recursive_mutex> no_capture_meanwhile(capture_exclusion());
    impl_->plans.clear();  // plans before the handle
    if (impl_->handle) cudnnDestroy(impl_->handle);
}

CudnnSdpa::Plan& CudnnSdpa::plan(const SdpaShape& s) {
    auto it = impl_->plans.find(s.key());
    if (it != impl_->plans.end()) return *it->second;
    const std::string shape = std::to_string(s.heads) + " heads, " + std::to_string(s.queries) +
                              " queries, " + std::to_string(s.keys) + " keys, head dims " +
                              std::to_string(s.dqk) + "/" + std::to_string(s.dv);
    if (s.dqk % 8 || s.dv % 8 || s.dqk > 256 || s.dv > 256 || s.queries > s.q_rows_allocated ||
        s.keys > s.k_rows_allocated || s.heads <= 0 || s.queries <= 0 || s.keys <= 0)
        throw Error("cuDNN attention: unsupported shape (" + shape +
                    "): head dims must be multiples of 8 up to 256, rows within the allocation");
    // Building a plan loads kernels and may allocate: never while another thread records a graph.
    const std::lock_guard<std::recursive_mutex> no_capture_meanwhile(capture_exclusion());
    auto p = std::make_unique<Plan>();
    bool ok = false;
    std::string unified_failure;
#if CUDNN_VERSION >= 91301
    try {  // any failure of the newer single operation leaves the composite graph to try
        ok = unified_plan(impl_->handle, s, *p);
    } catch (const Error& e) {
        unified_failure = std::string(" (the SDPA operation: ") + e.what() + ")";
    }
#endif
    if (!ok) {
        p = std::make_unique<Plan>();
        ok = composite_plan(impl_->handle, s, *p);
    }
    if (!ok) {
        char detail[512] = {0};
        cudnnGetLastErrorString(detail, sizeof detail);
        throw Error("cuDNN has no fused attention engine for " + shape +
                    (detail[0] ? std::string(": ") + detail : "") + unified_failure);
    }
    if (p->workspace > static_cast<int64_t>(impl_->workspace.bytes()))
        impl_->workspace = DeviceBuffer(static_cast<size_t>(p->workspace));
    return *(impl_->plans[s.key()] = std::move(p));
}

const void* CudnnSdpa::prepare(const SdpaShape& s) {
    plan(s);
    return impl_->workspace.get();
}

void CudnnSdpa::run(const SdpaShape& s, const void* q, const void* k, const void* v, void* o, float scale,
                    void* stream, float* stats) {
    if (s.stats && !stats) throw Error("cuDNN attention: a shape with statistics needs their buffer");
    Plan& p = plan(s);
    const cudaStream_t cs = as_stream(stream);
    if (!impl_->stream_set || impl_->stream != cs) {
        CUDNN_CHECK(cudnnSetStream(impl_->handle, cs));
        impl_->stream = cs;
        impl_->stream_set = true;
    }
    float scale_value = scale;  // by value: a host address, read while the call enqueues
    const int64_t uids[6] = {kQ, kK, kV, kO, kScale, kStats};
    void* ptrs[6] = {
        const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), o, &scale_value, stats};
    const int64_t n = s.stats ? 6 : 5;
    void* workspace = impl_->workspace.get();
    Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, uids, n)
        .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, ptrs, n)
        .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &workspace)
        .finalize();
    CUDNN_CHECK(cudnnBackendExecute(impl_->handle, p.plan.get(), pack.get()));
}

std::string CudnnSdpa::describe(const SdpaShape& s) {
    return plan(s).how;
}

#else  // no cuDNN in this build

struct CudnnSdpa::Plan {};
struct CudnnSdpa::Impl {};

bool CudnnSdpa::available(std::string* why) {
    if (why) *why = "this build has no cuDNN (the CUDA toolkit it was built with had none)";
    return false;
}
CudnnSdpa::CudnnSdpa() {
    throw Error("cuDNN attention unavailable: this build has no cuDNN");
}
CudnnSdpa::~CudnnSdpa() = default;
CudnnSdpa::Plan& CudnnSdpa::plan(const SdpaShape&) {
    throw Error("cuDNN attention unavailable: this build has no cuDNN");
}
void CudnnSdpa::run(const SdpaShape&, const void*, const void*, const void*, void*, float, void*, float*) {
    throw Error("cuDNN attention unavailable: this build has no cuDNN");
}
const void* CudnnSdpa::prepare(const SdpaShape&) {
    throw Error("cuDNN attention unavailable: this build has no cuDNN");
}
std::string CudnnSdpa::describe(const SdpaShape&) {
    return "unavailable";
}

#endif

}  // namespace kvw::cuda
