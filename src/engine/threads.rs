//! How many threads the CPU engine uses natively, one number for candle's
//! kernels and ours: candle's f32 gemm and its quantised matmul size their
//! pools from `RAYON_NUM_THREADS` (read once, at their first use), and our
//! kernels split their work on rayon's global pool (`nn::gemm`'s column
//! panels). Every split is of independent outputs, so the results are the
//! same bits at any count (tests/threads.rs). In the browser the threaded wasm
//! build (`threads` feature, pkg/threads/) gets the same global pool from
//! `initThreadPool` over Web Workers; the default build runs on one thread
//! (ARCHITECTURE.md, "Threads in the browser").

/// Every core this process may run on (`std::thread::available_parallelism`,
/// which honours the CPU affinity mask and cgroup quotas), 1 when unknown.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Makes the process use `threads` (at least 1) for the encoders' kernels.
/// Call it first, before any candle operation or rayon use: both size their
/// pools once.
///
/// Errors: rayon's global pool was already built (by an earlier call or an
/// earlier parallel operation).
pub fn set_threads(threads: usize) -> Result<(), String> {
    let threads = threads.max(1);
    // candle's gemm and block kernels read this variable; rayon's builder too.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| format!("cannot use {threads} threads: {e} (set it before the first encoding)"))
}
