"""Training: the harness every loop starts from (`harness`), the loops (`sft`, `rl`, rejection sampling in
`rejection`), their losses, checkpoints, processes, random states and run lock, the TRL reward adapter
(`trl_reward`), the GPU memory budget (`memory`) and the main job ``sr3 train`` (`train_command`)."""
