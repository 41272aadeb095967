"""Batch transcription on Ray, from one machine to a cluster (issue 14).

    python -m whisper_model.distributed --input_file recordings/ --output_dir out --num_workers 2 --batch_size 8
    python -m whisper_model.distributed --input_file /shared/audio --output_dir out --engine_dir /shared/engine \\
        --address auto --num_workers 8 --gpus_per_worker 1 --batch_size 16

Every flag of ``python -m whisper_model.run`` (same names and defaults), plus ``--num_workers``,
``--gpus_per_worker``, ``--cpus_per_worker`` and ``--address``. Each worker is a Ray actor that loads the model
(or engine) once and runs one batched ``Scheduler`` that the files join as they arrive (``worker``); the driver
hands the files out and writes each file's outputs, atomically, as it comes back (``job``), and records it in
``manifest.jsonl`` in the output folder so that a re-run skips what is done (``manifest``). Workers that die are
restarted by Ray and their files handed out again (``pool``). Without ``--address`` a local Ray is started for the
job: the same command runs on a laptop.

Modules: ``args`` (flags -> ``JobSpec``), ``manifest``, ``worker`` (the actor), ``pool`` (Ray: init, actors,
hand-out, retries), ``report`` (lines, bar, summary), ``job`` (the driver), ``command`` (``main``).
"""


def main(argv=None) -> int:
    from .command import main as command_main

    return command_main(argv)


__all__ = ["main"]
