//! The rank launcher with real child processes: the id exchange through the rendezvous
//! directory, and a failing rank ending the job with its own error.

use paramx::tp::launch::{publish, run_ranks, wait_for, LaunchSpec, RankEnv, RankFailed};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Where the ranks of this test process report: keyed by the launcher's (this process's) pid.
fn out_dir(launcher_pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("paramx-launch-test-{launcher_pid}"))
}

fn sh(script: &str, world_size: usize) -> LaunchSpec {
    LaunchSpec {
        world_size,
        program: PathBuf::from("sh"),
        args: vec!["-c".into(), script.into()],
    }
}

/// Body of one rank in `ranks_share_the_id_through_the_rendezvous`: started by the launcher as
/// `<this test binary> --ignored --exact launch::rank_entry_exchange`.
#[test]
#[ignore = "a rank process started by ranks_share_the_id_through_the_rendezvous"]
fn rank_entry_exchange() {
    let env = RankEnv::from_env()
        .unwrap()
        .expect("started by the launcher");
    let launcher: u32 = std::env::var("PARAMX_LAUNCHER_PID")
        .unwrap()
        .parse()
        .unwrap();
    if env.rank == 0 {
        let id: Vec<u8> = (0..128).map(|i| (i as u32 * 31 + launcher) as u8).collect();
        publish(&env.rendezvous, "nccl-id", &id).unwrap();
    }
    let id = wait_for(&env.rendezvous, "nccl-id", Duration::from_secs(60)).unwrap();
    let report = format!(
        "{} {} {} {}",
        env.rank,
        env.world_size,
        env.device_ordinal,
        id.iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    std::fs::write(out_dir(launcher).join(format!("rank-{}", env.rank)), report).unwrap();
}

#[test]
fn ranks_share_the_id_through_the_rendezvous() {
    let out = out_dir(std::process::id());
    std::fs::create_dir_all(&out).unwrap();
    let spec = LaunchSpec {
        world_size: 3,
        program: std::env::current_exe().unwrap(),
        args: ["--ignored", "--exact", "launch::rank_entry_exchange", "-q"]
            .iter()
            .map(OsString::from)
            .collect(),
    };
    run_ranks(&spec).unwrap();
    let reports: Vec<String> = (0..3)
        .map(|r| std::fs::read_to_string(out.join(format!("rank-{r}"))).unwrap())
        .collect();
    std::fs::remove_dir_all(&out).unwrap();
    let ids: Vec<&str> = reports
        .iter()
        .map(|r| r.split(' ').nth(3).unwrap())
        .collect();
    assert_eq!(ids[0].split(',').count(), 128);
    assert!(ids.iter().all(|id| *id == ids[0]), "{reports:?}");
    for (r, rep) in reports.iter().enumerate() {
        assert!(rep.starts_with(&format!("{r} 3 {r} ")), "{rep}");
    }
}

#[test]
fn a_failing_rank_ends_the_job_with_its_error() {
    // Rank 1 fails; ranks 0 and 2 would run for ten minutes unless the launcher kills them.
    let script = r#"if [ "$PARAMX_RANK" = 1 ]; then
        echo "loading shard 1 of 2" >&2
        echo "error: tensor model.layers.0.mlp.up_proj.weight missing" >&2
        exit 3
    fi
    exec sleep 600"#;
    let err = run_ranks(&sh(script, 3)).unwrap_err();
    let failed = err.downcast_ref::<RankFailed>().expect("a RankFailed");
    assert_eq!((failed.rank, failed.world_size), (1, 3));
    assert_eq!(failed.status, "exit status: 3");
    assert_eq!(
        failed.stderr_tail,
        vec![
            "loading shard 1 of 2".to_string(),
            "error: tensor model.layers.0.mlp.up_proj.weight missing".to_string()
        ]
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("rank 1 of 3 failed (exit status: 3)"),
        "{msg}"
    );
}

#[test]
fn a_rank_killed_by_a_signal_is_reported() {
    let script = r#"if [ "$PARAMX_RANK" = 0 ]; then kill -9 $$; fi; exec sleep 600"#;
    let err = run_ranks(&sh(script, 2)).unwrap_err();
    let failed = err.downcast_ref::<RankFailed>().expect("a RankFailed");
    assert_eq!(failed.rank, 0);
    assert_eq!(failed.status, "killed by signal 9");
}

#[test]
fn all_ranks_succeeding_is_success() {
    let script = r#"test "$PARAMX_WORLD_SIZE" = 4 && test -d "$PARAMX_RENDEZVOUS""#;
    run_ranks(&sh(script, 4)).unwrap();
}

#[test]
fn a_missing_program_is_an_error() {
    let spec = LaunchSpec {
        world_size: 2,
        program: PathBuf::from("/nonexistent/paramx"),
        args: vec![],
    };
    let err = run_ranks(&spec).unwrap_err().to_string();
    assert!(
        err.contains("cannot start rank 0 (/nonexistent/paramx)"),
        "{err}"
    );
}

/// The launcher's stop flag (what its SIGUSR1 handler sets) reaches every rank as the stop file,
/// rank 0's requeue code 75 is a normal end under the policy `paramx run` uses, and every rank's
/// code comes back in rank order; a follower is not killed while rank 0 finishes.
#[test]
fn a_stop_request_reaches_every_rank_and_their_codes_come_back() {
    use paramx::tp::launch::{run_ranks_with, LaunchOptions};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // Each rank waits (at most 60 s) for the stop file; rank 0 then exits 75 as a stopped
    // leader does, the others 0 a moment later.
    let script = r#"i=0; while [ ! -e "$PARAMX_RENDEZVOUS/stop" ]; do
        i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.1; done
    if [ "$PARAMX_RANK" = 0 ]; then exit 75; fi
    sleep 0.5; exit 0"#;
    let stop = Arc::new(AtomicBool::new(false));
    let setter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::SeqCst);
        })
    };
    let opts = LaunchOptions {
        normal_exit: |rank, code| code == 0 || (rank == 0 && code == 75),
        stop: Some(stop),
    };
    let codes = run_ranks_with(&sh(script, 3), &opts).unwrap();
    setter.join().unwrap();
    assert_eq!(codes, vec![75, 0, 0]);

    // Under the default policy the same 75 is a failure.
    let err = run_ranks(&sh("exit 75", 2)).unwrap_err();
    assert!(err.to_string().contains("exit status: 75"), "{err}");
}
