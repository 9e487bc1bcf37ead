//! GEMM throughput on the ViT-B/16 MLP shape (197 tokens × 768 → 3072) on
//! --threads threads (default 1): our int8 GEMMs (q8_0 with int16 and, on AVX-512
//! VNNI, q8_0 activations; q4_K), candle's q8_0 and q4_K block kernels and its f32 gemm, next to
//! the arithmetic limit of each instruction mix (`kpl::nn::gemm::rates`).
//! One JSON row per kernel on stdout (bench/run.sh collects them).
//!
//!     cargo run --release --example bench_gemm -- [--runs 5] [--shape 197x768x3072] [--threads 1]
//!
//! The peaks are one thread's (their loops do not split): printed by the
//! one-thread run only.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let runs: usize = arg("--runs").map(|r| r.parse()).transpose()?.unwrap_or(5);
    let shape = arg("--shape").unwrap_or_else(|| "197x768x3072".into());
    let dims: Vec<usize> = shape.split('x').map(|d| d.parse()).collect::<Result<_, _>>()?;
    let [m, k, n] = dims[..] else { return Err("--shape is MxKxN".into()) };
    let threads: usize = arg("--threads").map(|t| t.parse()).transpose()?.unwrap_or(1);
    kpl::engine::threads::set_threads(threads)?;
    // One thread: the CPU time of all this process's threads (Linux: candle runs
    // on a rayon thread), steadier than the wall clock on a shared machine. More
    // threads, or no /proc: the wall clock (CPU time would add the threads up).
    let start = std::time::Instant::now();
    let cpu_clock = threads == 1 && process_cpu_ns().is_some();
    let now = move || match process_cpu_ns().filter(|_| cpu_clock) {
        Some(ns) => ns as f64 * 1e-9,
        None => start.elapsed().as_secs_f64(),
    };
    for r in kpl::nn::gemm::rates::measure(m, k, n, runs, &now)? {
        if threads > 1 && r.kernel.starts_with("peak") {
            // One thread's limits, measured by the one-thread run (report.mjs scales them).
            continue;
        }
        let row = serde_json::json!({
            "engine": "kpl-native", "dtype": if r.kernel.starts_with("q4") { "q4" } else if r.kernel.starts_with("q8") || r.kernel.starts_with("peak-int8") { "q8" } else { "f32" },
            "model": format!("gemm-{shape}"), "threads": threads,
            "kernel": r.kernel, "isa": r.isa, "median_s": r.median_s, "clock": if cpu_clock { "process cpu" } else { "wall" }, "gops": r.ops_per_s / 1e9, "runs": runs,
        });
        println!("{row}");
    }
    Ok(())
}

/// utime + stime of the whole process, dead threads included (`/proc/self/stat`,
/// in clock ticks of 10 ms).
fn process_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}
