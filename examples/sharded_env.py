"""The environment with its corpus sharded over processes: every process holds a block of the
index's rows and steps its own queries; ranks and rewards equal those of one process.

Run with ``torchrun --nproc_per_node 2 examples/sharded_env.py`` (gloo on CPUs, NCCL on GPUs).
Run with plain ``python`` it starts a group of one process, so it runs anywhere. With NCCL (GPUs),
each process should hold its index on its own GPU: pass ``device=f"cuda:{local_rank}"``.
"""

import argparse
import os

import socket

import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist

import sr3_env  # noqa: F401  (registers RetrievalEmbed-v0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--num-envs", type=int, default=8, help="queries per step in each process")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    if "RANK" in os.environ:  # started by torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    else:  # plain python: a group of one
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    rank, world = dist.get_rank(), dist.get_world_size()
    envs = gym.make_vec("RetrievalEmbed-v0", num_envs=args.num_envs, vectorization_mode="vector_entry_point",
                        encoder=args.encoder, reward="ndcg@10", process_group="world")
    index = envs.unwrapped.index
    print(f"process {rank} of {world}: holds rows {index.shard.start}..{index.shard.stop} of {len(index)}")
    queries, _ = envs.reset(seed=rank)  # each process draws its own queries
    rewards = []
    for _ in range(args.steps):  # every process steps together: the index search is collective
        actions = np.asarray(envs.unwrapped.encoder.encode_documents(list(queries)), dtype=np.float32)
        queries, reward, _, _, infos = envs.step(actions)
        rewards.append(float(reward.mean()))
    print(f"process {rank}: mean nDCG@10 {np.mean(rewards):.3f}; gold ranks of the last step "
          f"{[int(r) for r in infos['final_info']['rank']]}")
    envs.close()
    dist.destroy_process_group()
    return {"rank": rank, "world": world, "mean_reward": float(np.mean(rewards))}


if __name__ == "__main__":
    main()
