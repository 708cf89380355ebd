// CUDA on the CPU, for checking the predictor's kernels without a GPU.
//
// src/cuda/emulator.rs compiles one translation unit with the host C++ compiler: this
// file, then the very kernel sources NVRTC compiles (src/cuda/kernels/*), then a table
// of the kernels. Each CUDA thread of a block is a fiber with its own small stack; a
// fiber runs until it reaches a synchronisation point (__syncthreads or a warp shuffle)
// and the block's scheduler decides when every thread may go on. So the kernels run with
// CUDA's semantics where they matter for correctness:
// - a barrier releases only when every thread of the block reached it; a thread that
//   exits while others wait at one, or a warp whose lanes disagree (some at a shuffle,
//   some at a barrier or exited), is reported as an error instead of hanging;
// - a full-mask shuffle needs all 32 lanes present, with the same mask and type;
// - dynamic shared memory starts as NaN, so a read before any write shows in the result;
// - threads run in an order the caller picks (ascending or descending lanes, warps and
//   blocks), so a kernel whose result depends on scheduling (a missing barrier, a race
//   between threads) gives different results under the two orders.
// Blocks are spread over a few OS threads; threads of one block share one OS thread.
//
// Nothing here is vectorised or fast: it exists to run every line of every kernel.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __restrict__ __restrict

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

namespace varad_emu {

enum class State { Runnable, AtShuffle, AtBarrier, Done };

struct Block;

// One CUDA thread.
struct Fiber {
    void* sp = nullptr;  // saved stack pointer while suspended
#if !defined(__x86_64__)
    ucontext_t context;
#endif
    char* stack = nullptr;  // usable stack, above its guard page
    size_t stack_size = 0;
    dim3 thread_idx;
    State state = State::Runnable;
    Block* block = nullptr;
    // The pending shuffle: what this lane offers, what it asks for, what it gets.
    uint64_t shuffle_value = 0;
    uint64_t shuffle_result = 0;
    unsigned shuffle_mask = 0;
    int shuffle_xor = 0;
    int shuffle_size = 0;
};

// The block being run by this OS thread.
struct Block {
    dim3 block_idx, block_dim, grid_dim;
    void* shared = nullptr;
    void (*call)(void* fn, void* const* args) = nullptr;
    void* fn = nullptr;
    void* const* args = nullptr;
    void* scheduler_sp = nullptr;
#if !defined(__x86_64__)
    ucontext_t scheduler_context;
#endif
};

inline thread_local Fiber* current_fiber = nullptr;
inline thread_local Block* current_block = nullptr;

inline void* dynamic_shared() { return current_block->shared; }

}  // namespace varad_emu

// The context switch: callee-saved registers on the old stack, then the new stack's.
// A new fiber's stack is laid out so that the first switch "returns" into the
// trampoline with the fiber in r12.
#if defined(__x86_64__)
extern "C" void varad_emu_switch(void** save_sp, void* to_sp);
extern "C" void varad_emu_trampoline();
asm(R"(
    .text
    .globl varad_emu_switch
    .hidden varad_emu_switch
    .type varad_emu_switch,@function
varad_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size varad_emu_switch, .-varad_emu_switch

    .globl varad_emu_trampoline
    .hidden varad_emu_trampoline
    .type varad_emu_trampoline,@function
varad_emu_trampoline:
    movq %r12, %rdi
    call varad_emu_fiber_main
    ud2
    .size varad_emu_trampoline, .-varad_emu_trampoline
)");
#endif

extern "C" void varad_emu_fiber_main(varad_emu::Fiber* f);

namespace varad_emu {

// Suspends the current fiber and returns to its block's scheduler.
inline void yield_to_scheduler(Fiber* f) {
#if defined(__x86_64__)
    varad_emu_switch(&f->sp, f->block->scheduler_sp);
#else
    swapcontext(&f->context, &f->block->scheduler_context);
#endif
}

inline void resume(Block* b, Fiber* f) {
    current_fiber = f;
#if defined(__x86_64__)
    varad_emu_switch(&b->scheduler_sp, f->sp);
#else
    swapcontext(&b->scheduler_context, &f->context);
#endif
    current_fiber = nullptr;
}

#if !defined(__x86_64__)
inline void ucontext_entry(unsigned lo, unsigned hi) {
    varad_emu_fiber_main(reinterpret_cast<Fiber*>((uintptr_t)lo | ((uintptr_t)hi << 32)));
}
#endif

// Points a fiber at the start of the kernel, on a fresh stack.
inline void start(Fiber* f) {
    f->state = State::Runnable;
#if defined(__x86_64__)
    // r15 r14 r13 r12 rbx rbp ret, with the return slot 24 bytes below the top so that
    // the trampoline's call leaves a 16-byte aligned stack, as the ABI requires.
    uintptr_t top = ((uintptr_t)(f->stack + f->stack_size)) & ~(uintptr_t)15;
    uintptr_t* slot = reinterpret_cast<uintptr_t*>(top - 24 - 6 * 8);
    for (int i = 0; i < 6; ++i) slot[i] = 0;
    slot[3] = (uintptr_t)f;  // r12
    slot[6] = (uintptr_t)&varad_emu_trampoline;
    f->sp = slot;
#else
    getcontext(&f->context);
    f->context.uc_stack.ss_sp = f->stack;
    f->context.uc_stack.ss_size = f->stack_size;
    f->context.uc_link = nullptr;
    uintptr_t p = (uintptr_t)f;
    makecontext(&f->context, (void (*)())ucontext_entry, 2, (unsigned)(p & 0xffffffffu),
                (unsigned)(p >> 32));
#endif
}

template <typename T>
T shuffle_xor(unsigned mask, T v, int lane_xor) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
    Fiber* f = current_fiber;
    f->shuffle_value = 0;
    std::memcpy(&f->shuffle_value, &v, sizeof(T));
    f->shuffle_mask = mask;
    f->shuffle_xor = lane_xor;
    f->shuffle_size = (int)sizeof(T);
    f->state = State::AtShuffle;
    yield_to_scheduler(f);
    T out;
    std::memcpy(&out, &f->shuffle_result, sizeof(T));
    return out;
}

inline void barrier() {
    Fiber* f = current_fiber;
    f->state = State::AtBarrier;
    yield_to_scheduler(f);
}

}  // namespace varad_emu

extern "C" void varad_emu_fiber_main(varad_emu::Fiber* f) {
    varad_emu::Block* b = f->block;
    b->call(b->fn, b->args);
    f->state = varad_emu::State::Done;
    varad_emu::yield_to_scheduler(f);
    std::abort();  // a finished fiber is never resumed
}

// The CUDA names the kernels use.
#define threadIdx (varad_emu::current_fiber->thread_idx)
#define blockIdx (varad_emu::current_block->block_idx)
#define blockDim (varad_emu::current_block->block_dim)
#define gridDim (varad_emu::current_block->grid_dim)
#define DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(varad_emu::dynamic_shared())

inline void __syncthreads() { varad_emu::barrier(); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_xor) {
    return varad_emu::shuffle_xor(mask, v, lane_xor);
}

template <typename T>
inline T min(T a, T b) {
    return b < a ? b : a;
}

template <typename T>
inline T max(T a, T b) {
    return a < b ? b : a;
}

namespace varad_emu {

// A kernel entry: its name, its parameters' kinds (P pointer, U 64-bit count, I int,
// F float; the Rust side passes the same letters) and how to call it from packed
// arguments (each argument's address, as cuLaunchKernel takes them).
struct Kernel {
    const char* name;
    std::string kinds;
    void* fn;
    void (*call)(void* fn, void* const* args);
};

template <typename T>
constexpr char kind_of() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_pointer<U>::value) return 'P';
    else if constexpr (std::is_same<U, unsigned long long>::value) return 'U';
    else if constexpr (std::is_same<U, int>::value) return 'I';
    else if constexpr (std::is_same<U, float>::value) return 'F';
    else return '?';
}

template <typename... A, size_t... I>
void call_with(void (*k)(A...), void* const* args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <typename... A>
void call_packed(void* fn, void* const* args) {
    call_with(reinterpret_cast<void (*)(A...)>(fn), args, std::index_sequence_for<A...>{});
}

template <typename... A>
Kernel kernel(const char* name, void (*k)(A...)) {
    return Kernel{name, std::string{kind_of<A>()...}, reinterpret_cast<void*>(k),
                  &call_packed<A...>};
}

const std::vector<Kernel>& kernels();

constexpr size_t STACK_BYTES = 64 * 1024;

// The fibers and shared memory of one OS thread, reused from block to block.
struct Worker {
    std::vector<Fiber> fibers;
    std::vector<char*> mappings;
    std::vector<unsigned char> shared;
    size_t page = 4096;

    Worker(unsigned threads, unsigned shared_bytes) : fibers(threads), shared(shared_bytes) {
        page = (size_t)sysconf(_SC_PAGESIZE);
        for (auto& f : fibers) {
            // A guard page below each stack: an overflow faults instead of corrupting.
            char* m = static_cast<char*>(mmap(nullptr, STACK_BYTES + page,
                                              PROT_READ | PROT_WRITE,
                                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
            if (m == MAP_FAILED) {
                for (char* p : mappings) munmap(p, STACK_BYTES + page);
                mappings.clear();
                return;
            }
            mprotect(m, page, PROT_NONE);
            mappings.push_back(m);
            f.stack = m + page;
            f.stack_size = STACK_BYTES;
        }
    }

    bool ok() const { return mappings.size() == fibers.size(); }

    ~Worker() {
        for (char* p : mappings) munmap(p, STACK_BYTES + page);
    }
};

struct Launch {
    const Kernel* kernel;
    void* const* args;
    dim3 grid;
    unsigned block;
    unsigned shared_bytes;
    bool descending;
    std::atomic<uint64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_lock;
    std::string error;

    void fail(const std::string& msg) {
        std::lock_guard<std::mutex> g(error_lock);
        if (!failed.exchange(true)) error = msg;
    }
};

inline std::string where(const Block& b) {
    char s[96];
    std::snprintf(s, sizeof s, "block (%u, %u, %u)", b.block_idx.x, b.block_idx.y,
                  b.block_idx.z);
    return s;
}

inline unsigned order_index(unsigned i, unsigned n, bool descending) {
    return descending ? n - 1 - i : i;
}

// Runs warp `w` until each of its lanes waits at a barrier or has exited, resolving its
// shuffles on the way. Returns an error message, empty when fine.
inline std::string run_warp(Launch& l, Block& b, Worker& wk, unsigned w) {
    unsigned first = w * 32;
    unsigned lanes = std::min(32u, l.block - first);
    Fiber* f = &wk.fibers[first];
    for (;;) {
        for (unsigned i = 0; i < lanes; ++i) {
            Fiber* t = &f[order_index(i, lanes, l.descending)];
            if (t->state == State::Runnable) resume(&b, t);
        }
        unsigned at_shuffle = 0, at_barrier = 0, done = 0;
        for (unsigned i = 0; i < lanes; ++i) {
            at_shuffle += f[i].state == State::AtShuffle;
            at_barrier += f[i].state == State::AtBarrier;
            done += f[i].state == State::Done;
        }
        if (at_shuffle == 0) return {};
        if (at_shuffle != 32) {
            char s[256];
            std::snprintf(s, sizeof s,
                          "%s, warp %u: a full-mask __shfl_xor_sync with %u of 32 lanes "
                          "present (%u at __syncthreads, %u exited, %u not in the block)",
                          where(b).c_str(), w, at_shuffle, at_barrier, done, 32 - lanes);
            return s;
        }
        for (unsigned i = 0; i < 32; ++i) {
            if (f[i].shuffle_mask != 0xffffffffu || f[i].shuffle_size != f[0].shuffle_size ||
                f[i].shuffle_xor < 0 || f[i].shuffle_xor > 31) {
                char s[256];
                std::snprintf(s, sizeof s,
                              "%s, warp %u, lane %u: shuffle with mask %#x, xor %d, %d bytes "
                              "(lane 0: %d bytes); the kernels use full-mask shuffles",
                              where(b).c_str(), w, i, f[i].shuffle_mask, f[i].shuffle_xor,
                              f[i].shuffle_size, f[0].shuffle_size);
                return s;
            }
        }
        for (unsigned i = 0; i < 32; ++i)
            f[i].shuffle_result = f[i ^ (unsigned)f[i].shuffle_xor].shuffle_value;
        for (unsigned i = 0; i < 32; ++i) f[i].state = State::Runnable;
    }
}

inline std::string run_block(Launch& l, Worker& wk, dim3 idx) {
    Block b;
    b.block_idx = idx;
    b.block_dim = dim3{l.block, 1, 1};
    b.grid_dim = l.grid;
    b.shared = wk.shared.empty() ? nullptr : wk.shared.data();
    b.call = l.kernel->call;
    b.fn = l.kernel->fn;
    b.args = l.args;
    // NaN in every float (and double) of shared memory: reads before writes show.
    std::memset(wk.shared.data(), 0xff, wk.shared.size());
    for (unsigned t = 0; t < l.block; ++t) {
        Fiber& f = wk.fibers[t];
        f.thread_idx = dim3{t, 0, 0};
        f.block = &b;
        start(&f);
    }
    current_block = &b;
    unsigned warps = (l.block + 31) / 32;
    std::string err;
    for (;;) {
        for (unsigned i = 0; i < warps && err.empty(); ++i)
            err = run_warp(l, b, wk, order_index(i, warps, l.descending));
        if (!err.empty()) break;
        unsigned at_barrier = 0, done = 0;
        for (unsigned t = 0; t < l.block; ++t) {
            at_barrier += wk.fibers[t].state == State::AtBarrier;
            done += wk.fibers[t].state == State::Done;
        }
        if (done == l.block) break;
        if (at_barrier + done != l.block) {
            err = where(b) + ": internal scheduler error (threads neither waiting nor done)";
            break;
        }
        if (done != 0) {
            char s[192];
            std::snprintf(s, sizeof s,
                          "%s: __syncthreads reached by %u threads while %u had exited",
                          where(b).c_str(), at_barrier, done);
            err = s;
            break;
        }
        for (unsigned t = 0; t < l.block; ++t) wk.fibers[t].state = State::Runnable;
    }
    current_block = nullptr;
    // Fibers stopped mid-kernel by an error are abandoned: their stacks are reset when
    // the next block starts them afresh.
    return err;
}

inline void work(Launch& l) {
    Worker wk(l.block, l.shared_bytes);
    if (!wk.ok()) {
        l.fail("could not map the fibers' stacks");
        return;
    }
    uint64_t total = (uint64_t)l.grid.x * l.grid.y * l.grid.z;
    for (;;) {
        if (l.failed.load()) return;
        uint64_t i = l.next.fetch_add(1);
        if (i >= total) return;
        uint64_t k = l.descending ? total - 1 - i : i;
        dim3 idx{(unsigned)(k % l.grid.x), (unsigned)(k / l.grid.x % l.grid.y),
                 (unsigned)(k / ((uint64_t)l.grid.x * l.grid.y))};
        std::string err = run_block(l, wk, idx);
        if (!err.empty()) {
            l.fail(err);
            return;
        }
    }
}

}  // namespace varad_emu

// Runs one launch to completion. Returns 0, or 1 with the reason in `err`: an unknown
// kernel, arguments of other kinds than the kernel's parameters, a launch shape CUDA
// refuses, or a synchronisation error of the kernel.
extern "C" __attribute__((visibility("default"))) int varad_emu_launch(
    const char* name, const char* kinds, void* const* args, unsigned grid_x, unsigned grid_y,
    unsigned grid_z, unsigned block, unsigned shared_bytes, int descending, int workers,
    char* err, size_t err_len) {
    auto fail = [&](const std::string& m) {
        std::snprintf(err, err_len, "%s: %s", name, m.c_str());
        return 1;
    };
    const varad_emu::Kernel* k = nullptr;
    for (const auto& e : varad_emu::kernels())
        if (std::strcmp(e.name, name) == 0) k = &e;
    if (k == nullptr) return fail("no such kernel");
    if (k->kinds != kinds)
        return fail("arguments of kinds " + std::string(kinds) + ", the kernel takes " +
                    k->kinds);
    // CUDA's limits: a launch outside them fails on every GPU.
    if (grid_x == 0 || grid_y == 0 || grid_z == 0 || block == 0)
        return fail("an empty grid or block is an invalid configuration");
    if (grid_x > 2147483647u || grid_y > 65535u || grid_z > 65535u)
        return fail("grid beyond CUDA's limits (2^31 - 1, 65535, 65535)");
    if (block > 1024) return fail("more than 1024 threads per block");
    if (shared_bytes > 48 * 1024)
        return fail("more than 48 KiB of dynamic shared memory without opting in");
    varad_emu::Launch l;
    l.kernel = k;
    l.args = args;
    l.grid = dim3{grid_x, grid_y, grid_z};
    l.block = block;
    l.shared_bytes = shared_bytes;
    l.descending = descending != 0;
    std::vector<std::thread> helpers;
    for (int i = 1; i < workers; ++i) helpers.emplace_back([&l] { varad_emu::work(l); });
    varad_emu::work(l);
    for (auto& t : helpers) t.join();
    if (l.failed.load()) return fail(l.error);
    return 0;
}
