"""The job on a two-node Ray cluster on this machine (``ray start --head`` and ``ray start --address`` on 127.0.0.1,
1 CPU each, started and stopped here): one worker per node, the same outputs as the single-process command line."""
from __future__ import annotations

import re
import subprocess

from _distributed_common import FLAGS, REPO, output_files
from _processes import end_session, env, free_port, job_command, ray_node, wait_for_text
from _requires import require

require("ray")


def test_a_two_node_cluster_gives_the_single_process_outputs(tmp_path, clips, reference):
    port = free_port()
    nodes = []
    try:
        nodes.append(ray_node(tmp_path / "head.log", "--head", f"--port={port}", "--include-dashboard=false"))
        wait_for_text(tmp_path / "head.log", "Ray runtime started", nodes[0])
        nodes.append(ray_node(tmp_path / "node.log", f"--address=127.0.0.1:{port}"))
        wait_for_text(tmp_path / "node.log", "Ray runtime started", nodes[1])
        out = tmp_path / "out"
        job = subprocess.run(job_command(*clips, "-o", out, *FLAGS, "--verbose", "False", "--num_workers", "2",
                                         "--address", f"127.0.0.1:{port}"),
                             cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    finally:
        leftovers = [end_session(node) for node in reversed(nodes)]
    assert job.returncode == 0, job.stderr
    assert job.stderr.strip().splitlines()[-1].startswith("done 5, failed 0, skipped 0; ")
    node_ids = set(re.findall(r"ready \(pid \d+, cpu, node (\w+),", job.stderr))
    assert len(node_ids) == 2, job.stderr  # a worker on each node
    assert "100%" in job.stderr and "5/5 files" in job.stderr  # --verbose False: the bar over the files
    assert output_files(out) == output_files(reference)
    assert leftovers == [[], []], "ray start left processes behind after SIGTERM"
