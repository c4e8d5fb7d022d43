"""Runs a command as a real multi-process JAX job on localhost (used by the tests)."""

import os
import socket
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SETTINGS = ("JAX_COORDINATOR_ADDRESS", "INFOJAX_NUM_PROCESSES", "INFOJAX_PROCESS_ID")


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def run_processes(command, *, num_processes, devices_per_process, settings="flags",
                  timeout=420):
  """Starts ``command`` once per process with a coordinator on 127.0.0.1; returns their outputs.

  Args:
    command: the argv list, the same for every process.
    num_processes: how many processes (the job's process count).
    devices_per_process: virtual CPU devices per process.
    settings: ``"flags"`` (``--coordinator_address`` etc. appended, as the experiment scripts take
      them) or ``"env"`` (``JAX_COORDINATOR_ADDRESS``, ``INFOJAX_NUM_PROCESSES``,
      ``INFOJAX_PROCESS_ID``).
    timeout: seconds each process may take.

  Returns:
    Each process's combined stdout and stderr; asserts that every process exited with 0.
  """
  port = free_port()
  processes = []
  for process_id in range(num_processes):
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    env.update(JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
    values = (f"127.0.0.1:{port}", str(num_processes), str(process_id))
    argv = list(command)
    if settings == "flags":
      argv += [f"--coordinator_address={values[0]}", f"--num_processes={values[1]}",
               f"--process_id={values[2]}"]
    else:
      env.update(zip(_SETTINGS, values))
    processes.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, cwd=ROOT))
  outputs = []
  try:
    for process in processes:
      outputs.append(process.communicate(timeout=timeout)[0].decode())
  finally:
    for process in processes:
      process.kill()
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-4000:]
  return outputs
