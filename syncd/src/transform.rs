//! `transform`: a jq program (run with the `jaq` crates) applied to each record before it is
//! stored, e.g. `{id: .contactId, name: .name | ascii_upcase}` or `del(.FieldProperties)`.
//!
//! The program must produce exactly one value per record; `null` means "skip this record"
//! (it is not stored, and a stored copy is left alone).
//!
//! # Budget
//!
//! A transform must not stall its subscription. [`Pool::run`] runs it on a worker thread (never
//! on the async workers) with a time budget per record (`transform_timeout`, default 100 ms)
//! and an output limit (`transform_max_output`, default 1 MiB of JSON). A record whose
//! transform fails ([`Failure::Failed`]), runs out of time ([`Failure::Timeout`]) or produces
//! too much ([`Failure::TooLarge`]) is quarantined by the subscription (see
//! [`crate::store::quarantine`]); the rest of its page is stored.
//!
//! jaq 2 has no way to interrupt a running filter: its values (`jaq_json::Val`) and its
//! evaluation offer no hook that runs while one output is computed (a native function is only
//! called when the program calls it; `def f: f; f` calls none and is a tail-call loop), so the
//! deadline is only checked between outputs and after the result. A program that loops inside
//! one output cannot be stopped: its thread is *abandoned* (it keeps burning a CPU, and keeps
//! any memory it grows, until the program ends, if it ever does) and a new thread takes its
//! place. At most [`MAX_ABANDONED`] abandoned threads may be running; beyond that the pool
//! refuses work ([`Failure::Unavailable`]) and every subscription with a transform fails its
//! passes with that error (visible in `syncd status`, `/readyz`, `syncd_errors_total`) until
//! the daemon is restarted. A program whose recursion is not a tail call (`def f: 1 + f; f`)
//! overflows its thread's stack, which aborts the process (Rust cannot catch that); systemd
//! restarts the service, and it meets the same record again. Test transforms with
//! `jq` on sample records before deploying them.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, RcIter};
use jaq_json::Val;
use serde_json::Value;

/// Default time budget per record.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

/// Default largest output per record (bytes of JSON).
pub const DEFAULT_MAX_OUTPUT: usize = 1 << 20;

/// Abandoned (timed-out, still running) transform threads tolerated before the pool refuses
/// work. Each may keep a CPU busy.
pub const MAX_ABANDONED: usize = 2;

/// Idle worker threads kept for reuse.
const MAX_IDLE: usize = 8;

/// Stack of a worker thread: deep (non-infinite) recursion in a program should not overflow.
const WORKER_STACK: usize = 64 << 20;

/// A record's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time per record.
    pub timeout: Duration,
    /// Bytes of JSON the output may have.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

/// Why a transform did not produce a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The program failed (`error(…)`, a type error), produced no value or several.
    Failed(String),
    /// It ran out of its time budget.
    Timeout(Duration),
    /// Its output is larger than the limit.
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// No transform can run: too many abandoned threads, or no thread could be started. Not
    /// the record's fault: the page fails instead of quarantining it.
    Unavailable(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Failed(message) => f.write_str(message),
            Failure::Timeout(budget) => {
                write!(f, "the transform ran out of its time budget ({budget:?})")
            }
            Failure::TooLarge { limit } => {
                write!(
                    f,
                    "the transform's output is larger than {limit} bytes of JSON"
                )
            }
            Failure::Unavailable(why) => write!(f, "transforms cannot run: {why}"),
        }
    }
}

/// A compiled jq program.
pub struct Transform {
    program: String,
    filter: jaq_core::Filter<Native<Val>>,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform")
            .field("program", &self.program)
            .finish()
    }
}

/// Counts bytes written, failing past the limit.
struct SizeLimit {
    written: usize,
    limit: usize,
}

impl std::io::Write for SizeLimit {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written += buf.len();
        if self.written > self.limit {
            return Err(std::io::Error::other("output too large"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Transform {
    /// Parses and compiles `program`; the error says what is wrong with it.
    pub fn compile(program: &str) -> Result<Transform, String> {
        let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
        let arena = Arena::default();
        let modules = loader
            .load(
                &arena,
                File {
                    code: program,
                    path: (),
                },
            )
            .map_err(|errors| {
                let details: Vec<String> = errors.iter().map(|(_, e)| format!("{e:?}")).collect();
                format!("jq program does not parse: {}", details.join("; "))
            })?;
        let filter = Compiler::default()
            .with_funs(jaq_std::funs().chain(jaq_json::funs()))
            .compile(modules)
            .map_err(|errors| {
                let details: Vec<String> = errors
                    .iter()
                    .flat_map(|(_, es)| {
                        es.iter()
                            .map(|(name, undefined)| format!("{undefined:?} {name}"))
                    })
                    .collect();
                format!("jq program does not compile: {}", details.join("; "))
            })?;
        Ok(Transform {
            program: program.to_string(),
            filter,
        })
    }

    /// The program text.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Runs the program on one record on the calling thread: `Ok(None)` when it produced
    /// `null` (skip the record). The deadline is checked between outputs and at the end (see
    /// the module docs: it cannot interrupt one output); use [`Pool::run`] to bound the time.
    pub fn apply(
        &self,
        input: Value,
        limits: Limits,
        deadline: Instant,
    ) -> Result<Option<Value>, Failure> {
        let inputs = RcIter::new(core::iter::empty());
        let mut outputs = self.filter.run((Ctx::new([], &inputs), Val::from(input)));
        let first = match outputs.next() {
            Some(Ok(value)) => value,
            Some(Err(e)) => return Err(Failure::Failed(format!("jq: {e}"))),
            None => {
                return Err(Failure::Failed(
                    "jq program produced no value for a record".into(),
                ));
            }
        };
        if Instant::now() > deadline {
            return Err(Failure::Timeout(limits.timeout));
        }
        if outputs.next().is_some() {
            return Err(Failure::Failed(
                "jq program produced more than one value for a record".into(),
            ));
        }
        let value = Value::from(first);
        let mut size = SizeLimit {
            written: 0,
            limit: limits.max_output,
        };
        if serde_json::to_writer(&mut size, &value).is_err() {
            return Err(Failure::TooLarge {
                limit: limits.max_output,
            });
        }
        if Instant::now() > deadline {
            return Err(Failure::Timeout(limits.timeout));
        }
        Ok((!value.is_null()).then_some(value))
    }
}

struct Job {
    transform: Arc<Transform>,
    input: Value,
    limits: Limits,
    deadline: Instant,
    reply: tokio::sync::oneshot::Sender<Result<Option<Value>, Failure>>,
}

/// A worker thread, owned by whoever runs a job on it.
struct Worker {
    jobs: mpsc::Sender<Job>,
    abandoned: Arc<AtomicBool>,
}

/// Threads that run transforms, so that jq never runs on the async workers and a transform
/// that overruns its budget is given up on (see the module docs).
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Worker>>,
    abandoned: Arc<AtomicUsize>,
    max_abandoned: usize,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Worker")
    }
}

impl Pool {
    /// A pool that tolerates `max_abandoned` abandoned threads.
    pub fn new(max_abandoned: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            abandoned: Arc::new(AtomicUsize::new(0)),
            max_abandoned,
        }
    }

    /// The daemon's pool (at most [`MAX_ABANDONED`] abandoned threads).
    pub fn global() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool::new(MAX_ABANDONED))
    }

    /// Abandoned threads still running.
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::SeqCst)
    }

    fn spawn(&self) -> Result<Worker, Failure> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let abandoned = Arc::new(AtomicBool::new(false));
        let flag = abandoned.clone();
        let count = self.abandoned.clone();
        std::thread::Builder::new()
            .name("syncd-transform".into())
            .stack_size(WORKER_STACK)
            .spawn(move || {
                while let Ok(job) = receiver.recv() {
                    let Job {
                        transform,
                        input,
                        limits,
                        deadline,
                        reply,
                    } = job;
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        transform.apply(input, limits, deadline)
                    }))
                    .unwrap_or_else(|_| Err(Failure::Failed("the jq program panicked".into())));
                    let _ = reply.send(result);
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                }
                if flag.load(Ordering::SeqCst) {
                    count.fetch_sub(1, Ordering::SeqCst);
                    tracing::info!("an abandoned transform finished; its thread is gone");
                }
            })
            .map_err(|e| {
                Failure::Unavailable(format!("could not start a transform thread: {e}"))
            })?;
        Ok(Worker { jobs, abandoned })
    }

    /// Runs `transform` on `input` on a worker thread within `limits`.
    pub async fn run(
        &self,
        transform: &Arc<Transform>,
        input: Value,
        limits: Limits,
    ) -> Result<Option<Value>, Failure> {
        let abandoned = self.abandoned();
        if abandoned >= self.max_abandoned {
            return Err(Failure::Unavailable(format!(
                "{abandoned} transforms that overran their budget are still running (at most {} are tolerated); fix the transform and restart syncd",
                self.max_abandoned
            )));
        }
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let worker = match idle {
            Some(worker) => worker,
            None => self.spawn()?,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            transform: transform.clone(),
            input,
            limits,
            deadline: Instant::now() + limits.timeout,
            reply,
        };
        // An idle thread that is gone (it cannot be: panics are caught) gets replaced once.
        let worker = match worker.jobs.send(job) {
            Ok(()) => worker,
            Err(mpsc::SendError(job)) => {
                let fresh = self.spawn()?;
                fresh
                    .jobs
                    .send(job)
                    .map_err(|_| Failure::Unavailable("a new transform thread is gone".into()))?;
                fresh
            }
        };
        match tokio::time::timeout(limits.timeout, answer).await {
            Ok(Ok(result)) => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < MAX_IDLE {
                    idle.push(worker);
                }
                result
            }
            Ok(Err(_)) => Err(Failure::Failed(
                "the transform thread stopped without an answer".into(),
            )),
            Err(_) => {
                // Count first, then flag: the thread decrements only after it sees the flag.
                self.abandoned.fetch_add(1, Ordering::SeqCst);
                worker.abandoned.store(true, Ordering::SeqCst);
                drop(worker);
                tracing::warn!(
                    budget_ms = limits.timeout.as_millis() as u64,
                    abandoned = self.abandoned(),
                    "a transform overran its budget; its thread is abandoned"
                );
                Err(Failure::Timeout(limits.timeout))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(t: &Transform, input: Value) -> Result<Option<Value>, Failure> {
        t.apply(
            input,
            Limits::default(),
            Instant::now() + Duration::from_secs(60),
        )
    }

    #[test]
    fn transforms_records() {
        let t = Transform::compile("{id: .contactId, name: (.name | ascii_upcase)}").unwrap();
        assert_eq!(
            apply(&t, json!({ "contactId": 5, "name": "ab" })).unwrap(),
            Some(json!({ "id": 5, "name": "AB" }))
        );
        let skip = Transform::compile("if .deleted then null else . end").unwrap();
        assert_eq!(apply(&skip, json!({ "deleted": true })).unwrap(), None);
    }

    const TIGHT: Limits = Limits {
        timeout: Duration::from_millis(50),
        max_output: 100,
    };

    /// For transforms that must succeed: generous on a loaded machine.
    const LOOSE: Limits = Limits {
        timeout: Duration::from_secs(5),
        max_output: 100,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_runs_transforms_and_enforces_the_output_limit() {
        let pool = Pool::new(1);
        let t = Arc::new(Transform::compile("{n: (.n + 1)}").unwrap());
        for n in 0..20 {
            assert_eq!(
                pool.run(&t, json!({ "n": n }), LOOSE).await.unwrap(),
                Some(json!({ "n": n + 1 }))
            );
        }
        assert!(
            pool.idle.lock().unwrap().len() <= 1,
            "one job at a time reuses one thread"
        );
        let big = Arc::new(Transform::compile("[range(1000)]").unwrap());
        assert_eq!(
            pool.run(&big, json!({}), LOOSE).await.unwrap_err(),
            Failure::TooLarge { limit: 100 }
        );
        let failing = Arc::new(Transform::compile("error(\"x\")").unwrap());
        let err = pool.run(&failing, json!({}), LOOSE).await.unwrap_err();
        assert!(
            matches!(&err, Failure::Failed(m) if m.contains('x')),
            "{err}"
        );
        assert_eq!(pool.abandoned(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transform_that_never_ends_is_abandoned_within_its_budget_and_the_cap_holds() {
        let pool = Pool::new(1);
        // A tail-recursive loop: no output ever, no native call, constant memory.
        let looping = Arc::new(Transform::compile("def f: f; f").unwrap());
        let began = Instant::now();
        let err = pool.run(&looping, json!({}), TIGHT).await.unwrap_err();
        let took = began.elapsed();
        assert_eq!(err, Failure::Timeout(TIGHT.timeout));
        assert!(took < TIGHT.timeout * 5, "took {took:?}");
        assert_eq!(pool.abandoned(), 1);
        // The cap (1) is reached: the pool refuses work instead of abandoning more threads.
        let fine = Arc::new(Transform::compile(".a").unwrap());
        let err = pool.run(&fine, json!({ "a": 1 }), LOOSE).await.unwrap_err();
        assert!(
            matches!(&err, Failure::Unavailable(m) if m.contains("still running")),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_transform_that_finishes_frees_its_place() {
        let pool = Pool::new(1);
        // Runs for a while (well over the budget), then ends.
        let slow = Arc::new(Transform::compile("last(range(3000000))").unwrap());
        let err = pool.run(&slow, json!({}), TIGHT).await.unwrap_err();
        assert_eq!(err, Failure::Timeout(TIGHT.timeout));
        assert_eq!(pool.abandoned(), 1);
        let began = Instant::now();
        while pool.abandoned() > 0 {
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "the slow transform never ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fine = Arc::new(Transform::compile(".a").unwrap());
        assert_eq!(
            pool.run(&fine, json!({ "a": 1 }), LOOSE).await.unwrap(),
            Some(json!(1))
        );
    }

    #[test]
    fn bad_programs_and_runtime_errors_are_reported() {
        assert!(
            Transform::compile(".name |=")
                .unwrap_err()
                .contains("does not parse")
        );
        assert!(
            Transform::compile("nosuchfunction(1)")
                .unwrap_err()
                .contains("does not compile")
        );
        let many = Transform::compile(".[]").unwrap();
        assert!(
            apply(&many, json!([1, 2]))
                .unwrap_err()
                .to_string()
                .contains("more than one")
        );
        let failing = Transform::compile("error(\"boom\")").unwrap();
        assert!(
            apply(&failing, json!({}))
                .unwrap_err()
                .to_string()
                .contains("boom")
        );
    }
}
