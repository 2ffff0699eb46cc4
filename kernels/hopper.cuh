// Hopper (sm_90a) building blocks for the warp-specialized attention kernel of issue 21: warpgroup matrix
// multiply-accumulate (wgmma) on bf16 operands in shared memory, the shared-memory matrix descriptors it
// reads them through, and the fences around it. Compiled only into sm_90a objects (nvcc
// -gencode=arch=compute_90a,code=sm_90a); every function is __forceinline__.
//
// Operand layout (PTX ISA, "Shared Memory Matrix Layout"): B (N x K) K-major (A, where it is in shared
// memory, too), in 128-byte swizzled panels: a panel holds `rows` rows of 64 bf16 (128 bytes), and the
// 16-byte chunk c of row r sits at chunk c ^ (r % 8) of that row. A panel starts at a 1024-byte boundary; a
// tile of K = 64·p is p panels one after another. swizzled_offset() gives an element's byte offset in such a
// tile. A single k16 step may sit in a narrow 32-byte swizzled panel (smem_descriptor_32b); A may come from
// registers.
#pragma once

#include <cstdint>

namespace kvw::cuda::hopper {

// Byte offset of element (row, k) in a K-major tile of `rows` rows stored as 128-byte swizzled panels.
__host__ __device__ __forceinline__ uint32_t swizzled_offset(int row, int k, int rows) {
    const int panel = k / 64, kk = k % 64;
    const int chunk = (kk / 8) ^ (row % 8);
    return static_cast<uint32_t>(panel * rows * 128 + row * 128 + chunk * 16 + (kk % 8) * 2);
}

#if defined(__CUDA_ARCH__)

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// The 64-bit descriptor of a K-major, 128-byte swizzled operand starting at shared address `addr` (the
// panel's start plus 32 bytes per k16 step inside it): start address, leading byte offset (unused by swizzled
// K-major layouts: 1), stride byte offset 1024 (eight 128-byte rows: the next core-matrix group), swizzle
// mode 1 (128B).
__device__ __forceinline__ uint64_t smem_descriptor(uint32_t addr) {
    uint64_t d = (static_cast<uint64_t>(addr) & 0x3FFFF) >> 4;
    d |= static_cast<uint64_t>(1) << 16;          // leading byte offset >> 4
    d |= static_cast<uint64_t>(1024 >> 4) << 32;  // stride byte offset >> 4
    d |= static_cast<uint64_t>(1) << 62;          // 128-byte swizzle
    return d;
}

// The descriptor of a K-major operand in a narrow panel, 32-byte swizzled: rows of 16 bf16 (one k16 step, 32
// bytes; the 16-byte chunk c of row r at c ^ ((r / 4) % 2)), the next eight rows 256 bytes on (stride byte
// offset), swizzle mode 3 (32B). The panel starts at a 256-byte boundary.
__device__ __forceinline__ uint64_t smem_descriptor_32b(uint32_t addr) {
    uint64_t d = (static_cast<uint64_t>(addr) & 0x3FFFF) >> 4;
    d |= static_cast<uint64_t>(1) << 16;         // leading byte offset >> 4 (unused)
    d |= static_cast<uint64_t>(256 >> 4) << 32;  // stride byte offset >> 4
    d |= static_cast<uint64_t>(3) << 62;         // 32-byte swizzle
    return d;
}

// The descriptor of an MN-major, 128-byte swizzled operand (trans-b): rows of 64 bf16 along N (128 bytes,
// chunk c of row r at c ^ (r % 8), as swizzled_offset with row = the K index), one row per K index; the next
// eight K rows 1024 bytes on (stride byte offset), the next 64 N columns `panel_bytes` on (leading byte
// offset; unused by an N of 64). A k16 step advances the start by 16 rows (2048 bytes).
__device__ __forceinline__ uint64_t smem_descriptor_mn(uint32_t addr, uint32_t panel_bytes) {
    uint64_t d = (static_cast<uint64_t>(addr) & 0x3FFFF) >> 4;
    d |= static_cast<uint64_t>((panel_bytes >> 4) & 0x3FFF) << 16;  // leading byte offset >> 4
    d |= static_cast<uint64_t>(1024 >> 4) << 32;                    // stride byte offset >> 4
    d |= static_cast<uint64_t>(1) << 62;                            // 128-byte swizzle
    return d;
}

// Ordinary shared-memory stores become visible to the tensor cores' (async proxy's) reads after this, in each
// writing thread, and a barrier.
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Pins registers that an asynchronous wgmma reads or writes at this point of the program, so that the
// compiler moves no arithmetic on them across a wgmma issue or wait (the asm statements alone order only
// themselves).
template <int N>
__device__ __forceinline__ void fence_operands(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// The same for register A operands (bf16 pairs) that a wgmma in flight reads.
template <int N>
__device__ __forceinline__ void fence_operands(uint32_t (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// The 32 fp32 accumulators of an m64n64 wgmma as inline-asm operands %0..%31 (read and written).
#define KVW_WGMMA_ACCUMULATOR_LIST                                                                          \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
    "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define KVW_WGMMA_ACCUMULATORS(d)                                                                   \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),    \
        "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),  \
        "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),  \
        "+f"(d[29]), "+f"(d[30]), "+f"(d[31])

// d[64 x 64] (+)= A[64 x 16] · B[64 x 16]ᵀ, bf16 operands from shared memory (descriptors), fp32
// accumulators: thread t of the warpgroup holds d[i] at row 16·(t/32) + (t%32)/4 + 8·((i/2)%2), column
// 8·(i/4) + 2·(t%4) + i%2. accumulate false: d = A·Bᵀ (the registers' old values ignored).
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], uint64_t a, uint64_t b, bool accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " KVW_WGMMA_ACCUMULATOR_LIST
        ", %32, %33, p, 1, 1, "
        "0, 0;\n}\n"
        : KVW_WGMMA_ACCUMULATORS(d)
        : "l"(a), "l"(b), "r"(accumulate ? 1 : 0));
}

// The 64 accumulators of an m64n128 wgmma, %0..%63.
#define KVW_WGMMA_ACCUMULATOR_LIST_64                                                                       \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
    "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "  \
    "%42, "                                                                                                 \
    "%43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, "  \
    "%63}"
#define KVW_WGMMA_ACCUMULATORS_64(d)                                                                         \
    KVW_WGMMA_ACCUMULATORS(d), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), \
        "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]),           \
        "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]),           \
        "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]),           \
        "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// Registers between warpgroups of different roles (sm_90a): the producer gives some back, the consumers take
// them. Every thread of the warpgroup executes it; the kernel needs a register cap at entry
// (__launch_bounds__(threads, 1)).
template <int N>
__device__ __forceinline__ void registers_release() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void registers_claim() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// d[64 x 64] (+)= A[64 x 16] · B, A from registers, B MN-major in shared memory (trans-b). Thread t of the
// warpgroup holds A's bf16 pairs a[0] (row r, k 2c..2c+1), a[1] (row r+8, k 2c..), a[2] (row r, k 2c+8..),
// a[3] (row r+8, k 2c+8..), r = 16·(t/32) + (t%32)/4, c = t%4: exactly the accumulator pairs d[8s..8s+7] of a
// wgmma_m64n64k16 result for its key columns [16s, 16s+16), so a softmax'd score tile feeds P·V without
// leaving registers.
// kTransB false: B K-major (smem_descriptor), as Q·Kᵀ with Q in registers.
template <bool kTransB = true>
__device__ __forceinline__ void wgmma_m64n64k16_rs_tb(float (&d)[32], const uint32_t (&a)[4], uint64_t b,
                                                      bool accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " KVW_WGMMA_ACCUMULATOR_LIST
        ", "
        "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : KVW_WGMMA_ACCUMULATORS(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate ? 1 : 0), "n"(kTransB ? 1 : 0));
}

// d[64 x 128] (+)= A[64 x 16] · B, as wgmma_m64n64k16_rs_tb with 128 columns: B's second 64 columns are
// the descriptor's leading byte offset on (smem_descriptor_mn's panel_bytes); d[i] at row 16·(t/32) +
// (t%32)/4 + 8·((i/2)%2), column 8·(i/4) + 2·(t%4) + i%2, i < 64.
template <bool kTransB = true>
__device__ __forceinline__ void wgmma_m64n128k16_rs_tb(float (&d)[64], const uint32_t (&a)[4], uint64_t b,
                                                       bool accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " KVW_WGMMA_ACCUMULATOR_LIST_64
        ", "
        "{%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
        : KVW_WGMMA_ACCUMULATORS_64(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate ? 1 : 0), "n"(kTransB ? 1 : 0));
}

// 2^x, flushing subnormal results to zero (one MUFU.EX2; exp2f adds range handling for subnormals, which
// softmax weights below 2^-126 of the row's largest do not need).
__device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// Named barriers (ids 1..15; 0 is __syncthreads) between warpgroups of different roles: `threads` counts
// every thread that arrives or syncs in one phase (a multiple of 32). arrive does not wait; sync waits for
// the phase to fill.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Transaction barriers (mbarrier) in shared memory, for copies the copy engine (TMA) completes: a phase
// ends when the expected arrivals have arrived and the bytes announced with them have landed.
__device__ __forceinline__ void mbarrier_init(uint32_t bar, uint32_t arrivals) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}
// One arrival that also announces `bytes` of copies to complete on this barrier in the current phase.
__device__ __forceinline__ void mbarrier_arrive_expect_bytes(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
// Waits until the phase of parity `parity` (0, 1, 0, ... for the barrier's successive phases) has ended.
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
    uint32_t ended = 0;
    do {
        asm volatile(
            "{\n.reg .pred ended;\nmbarrier.try_wait.parity.shared::cta.b64 ended, [%1], %2;\n"
            "selp.u32 %0, 1, 0, ended;\n}\n"
            : "=r"(ended)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!ended);
}
// A box of a 3-D tensor (coordinates innermost first) copied by the copy engine into shared memory at `dst`,
// in the map's layout (here 128-byte swizzled panels, so dst starts at a 1024-byte boundary); out-of-bounds
// elements are zeros. Completes on `bar` (its bytes announced there). `map`: a __grid_constant__ kernel
// parameter's address.
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* map, int c0, int c1, int c2,
                                            uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
        "%4}], "
        "[%5];\n" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
        : "memory");
}
__device__ __forceinline__ void tma_prefetch_map(const void* map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

#endif  // __CUDA_ARCH__

}  // namespace kvw::cuda::hopper
