//! A criterion measurement of the bench thread's CPU time, for machines shared with
//! other work: time the thread spends descheduled is not counted (cache pollution
//! by the other work still is). Chosen with `PORTCULLIS_BENCH_CLOCK=cpu`.

use std::time::Duration;

use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// Thread CPU time (`CLOCK_THREAD_CPUTIME_ID`).
pub struct ThreadCpu;

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpu {
    type Intermediate = ThreadTime;
    type Value = Duration;

    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }

    fn end(&self, started: ThreadTime) -> Duration {
        started.elapsed()
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

/// Whether `PORTCULLIS_BENCH_CLOCK=cpu` asks for thread CPU time.
pub fn cpu_clock() -> bool {
    std::env::var("PORTCULLIS_BENCH_CLOCK").is_ok_and(|clock| clock == "cpu")
}
