//! The NCCL communicator on a real GPU (only with `--features nccl`; skipped without a GPU).
//!
//! Built by `slurm/build-cuda.sh --tests` and run on the GPU host, where there is no cargo:
//! `./nccl_gpu --test-threads=1`. One GPU is enough: NCCL refuses two ranks on one GPU, so the
//! collectives are checked with one rank, and the failure path with a second rank that never
//! joins (rank 0 must give up with an error, never hang).
#![cfg(feature = "nccl")]

use candle_core::{DType, Device, Tensor};
use paramx::tp::launch::{run_ranks, LaunchSpec, RankEnv, RankFailed};
use paramx::tp::nccl::NcclComm;
use paramx::tp::Communicator;
use std::ffi::OsString;
use std::time::Duration;

fn gpu_present() -> bool {
    match Device::new_cuda(0) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP: no CUDA device ({e})");
            false
        }
    }
}

fn myself(test: &str, world_size: usize) -> LaunchSpec {
    LaunchSpec {
        world_size,
        program: std::env::current_exe().unwrap(),
        args: ["--ignored", "--exact", test, "--nocapture"]
            .iter()
            .map(OsString::from)
            .collect(),
    }
}

#[test]
#[ignore = "a rank process started by one_rank_collectives_match_the_cpu"]
fn rank_entry_collectives() {
    let env = RankEnv::from_env()
        .unwrap()
        .expect("started by the launcher");
    let comm = NcclComm::from_rank_env(&env, Duration::from_secs(60)).unwrap();
    assert_eq!((comm.rank(), comm.world_size()), (0, 1));
    let dev = comm.device().clone();
    let cpu = Tensor::arange(0f32, 24., &Device::Cpu)
        .unwrap()
        .reshape((2, 3, 4))
        .unwrap();
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let t = cpu.to_dtype(dtype).unwrap().to_device(&dev).unwrap();
        let sum = comm.all_reduce_sum(&t).unwrap();
        assert_eq!(sum.dims(), &[2, 3, 4]);
        let back = sum
            .to_dtype(DType::F32)
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            (0..24).map(|x| x as f32).collect::<Vec<_>>()
        );
        // A non-contiguous input is made contiguous first.
        let tt = t.transpose(1, 2).unwrap();
        let s2 = comm
            .all_reduce_sum(&tt)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let want = tt.to_dtype(DType::F32).unwrap();
        let diff = (s2 - want)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
        for dim in 0..3 {
            let g = comm.all_gather(&t, dim).unwrap();
            assert_eq!(g.dims(), t.dims(), "dim {dim}");
        }
    }
    let idx = Tensor::new(&[7u32, 1, 5], &dev).unwrap();
    assert_eq!(
        comm.all_gather(&idx, 0).unwrap().to_vec1::<u32>().unwrap(),
        vec![7, 1, 5]
    );
    println!("rank_entry_collectives: ok");
}

#[test]
fn one_rank_collectives_match_the_cpu() {
    if !gpu_present() {
        return;
    }
    run_ranks(&myself("rank_entry_collectives", 1)).unwrap();
}

#[test]
#[ignore = "a rank process started by a_peer_that_never_joins_is_an_error_not_a_hang"]
fn rank_entry_lonely() {
    let env = RankEnv::from_env()
        .unwrap()
        .expect("started by the launcher");
    if env.rank == 1 {
        // Never joins: stays alive until the launcher kills it.
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let comm = NcclComm::from_rank_env(&env, Duration::from_secs(5));
    panic!("rank 0 must not get past the NCCL join without rank 1: {comm:?}");
}

#[test]
fn a_peer_that_never_joins_is_an_error_not_a_hang() {
    if !gpu_present() {
        return;
    }
    let err = run_ranks(&myself("rank_entry_lonely", 2)).unwrap_err();
    let failed = err.downcast_ref::<RankFailed>().expect("a RankFailed");
    assert_eq!(failed.rank, 0, "{err}");
    assert_eq!(failed.status, "exit status: 3", "{err}");
    assert!(
        err.to_string()
            .contains("the NCCL group did not form within 5s"),
        "{err}"
    );
}
