use super::*;

/// A fake worker in Python that speaks the protocol; requests say what it
/// does (`op`).
const FAKE: &str = r#"
import json, os, sys, time
if sys.argv[1:] == ["notready"]:
    print(json.dumps({"ready": False, "error": "no module named piper\nrun scripts/deps.sh"}), flush=True)
    sys.exit(3)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    r = json.loads(line)
    op = r.get("op")
    if op == "crash":
        sys.exit(1)
    if op == "crash_once":
        if not os.path.exists(r["marker"]):
            open(r["marker"], "w").close()
            sys.exit(1)
    if op == "hang":
        time.sleep(60)
    if op == "huge":
        print("x" * 100000, flush=True)
        continue
    if op == "wrong_id":
        r["id"] += 1
    if op == "refuse":
        print(json.dumps({"id": r["id"], "ok": False, "error": "bad voice"}), flush=True)
        continue
    print(json.dumps({"id": r["id"], "ok": True, "pid": os.getpid()}), flush=True)
"#;

fn spec(dir: &tempfile::TempDir, args: &[&str]) -> WorkerSpec {
    let d = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    WorkerSpec {
        name: "fake".into(),
        cmd: Cmd::new("python3").args(["-c", FAKE]).args(args.iter().copied()),
        dir: d.clone(),
        log: d.join("fake.log"),
    }
}

fn alive(pid: u64) -> bool {
    // A killed child that nobody reaped yet is a zombie: not running.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

async fn pid(pool: &WorkerPool) -> u64 {
    let r = pool
        .call(serde_json::json!({"op": "echo"}), &CancellationToken::new())
        .await
        .unwrap();
    r["pid"].as_u64().unwrap()
}

#[tokio::test]
async fn one_worker_answers_every_request_and_dies_with_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let workers = Workers::default();
    let pool = workers.pool(spec(&dir, &[]), 1);
    let first = pid(&pool).await;
    for _ in 0..5 {
        assert_eq!(pid(&pool).await, first, "the warm worker is reused");
    }
    assert_eq!(pool.started(), 1);
    assert!(alive(first));
    drop(pool);
    drop(workers);
    for _ in 0..50 {
        if !alive(first) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the worker outlived its handle");
}

#[tokio::test]
async fn slots_bound_the_processes() {
    let dir = tempfile::tempdir().unwrap();
    let workers = Workers::default();
    let pool = workers.pool(spec(&dir, &[]), 2);
    let calls = (0..6).map(|_| pid(&pool));
    let pids: std::collections::BTreeSet<u64> = futures_util::future::join_all(calls).await.into_iter().collect();
    assert!(pool.started() <= 2 && pids.len() <= 2, "{pids:?}");
}

#[tokio::test]
async fn a_crash_is_restarted_once_then_the_pool_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let workers = Workers::default();
    let pool = workers.pool(spec(&dir, &[]), 1);
    let marker = dir.path().join("crashed").to_str().unwrap().to_string();
    let cancel = CancellationToken::new();
    let r = pool
        .call(serde_json::json!({"op": "crash_once", "marker": marker}), &cancel)
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "the request was sent again to a new worker");
    assert_eq!(pool.started(), 2);
    let e = pool
        .call(serde_json::json!({"op": "crash"}), &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExecError::Transient(_)),
        "a crash may pass: the fallback is provisional: {e:?}"
    );
    assert!(e.to_string().contains("the fake worker failed (it exited)"), "{e}");
    assert!(e.to_string().contains("fake.log"), "{e}");
    let again = pool.call(serde_json::json!({"op": "echo"}), &cancel).await.unwrap_err();
    assert_eq!(again.to_string(), e.to_string(), "a broken pool fails at once");
    assert_eq!(pool.started(), 2, "no third start");
}

#[tokio::test]
async fn a_refusal_fails_the_request_not_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let workers = Workers::default();
    let pool = workers.pool(spec(&dir, &[]), 1);
    let first = pid(&pool).await;
    let e = pool
        .call(serde_json::json!({"op": "refuse"}), &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "fake: bad voice");
    assert_eq!(pid(&pool).await, first);
}

#[tokio::test]
async fn a_worker_that_cannot_start_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let workers = Workers::default();
    let pool = workers.pool(spec(&dir, &["notready"]), 1);
    let e = pool
        .call(serde_json::json!({}), &CancellationToken::new())
        .await
        .unwrap_err();
    let e = e.to_string();
    assert!(e.contains("no module named piper"), "{e}");
    assert!(!e.contains("deps.sh\n"), "one line of the reason: {e}");
    assert_eq!(pool.started(), 1, "a refusal is not a crash: no restart");
    assert!(
        matches!(
            pool.call(serde_json::json!({}), &CancellationToken::new()).await,
            Err(ExecError::Permanent(_))
        ),
        "no later try fixes a missing package"
    );
}

#[tokio::test]
async fn broken_replies_are_crashes() {
    for op in ["huge", "wrong_id"] {
        let dir = tempfile::tempdir().unwrap();
        let workers = Workers::default();
        let pool = workers.pool(spec(&dir, &[]), 1);
        let e = pool
            .call(serde_json::json!({"op": op}), &CancellationToken::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than") || e.contains("another id"), "{op}: {e}");
        assert_eq!(pool.started(), 2, "{op}: restarted once");
    }
}

#[tokio::test]
async fn cancelling_kills_the_worker_mid_request() {
    let dir = tempfile::tempdir().unwrap();
    let workers = Workers::default();
    let pool = workers.pool(spec(&dir, &[]), 1);
    let first = pid(&pool).await;
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    let e = pool.call(serde_json::json!({"op": "hang"}), &cancel).await.unwrap_err();
    assert!(matches!(e, ExecError::Cancelled), "{e:?}");
    for _ in 0..50 {
        if !alive(first) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(first), "the hung worker was killed");
    let next = pid(&pool).await;
    assert_ne!(next, first, "a fresh worker answers the next request");
}
