"""Where jobs run: one executor interface, two backends.

A job is one firmware image's items for a lane (jobs.py); an executor runs
jobs on boards of their lanes and yields each measurement as it arrives
(`executor.measure(jobs)`, with `executor.stats`):

    local.py    a thread per board of this host (the farm of `tinyhil regress`)
    cluster.py  Dask distributed: `tinyhil worker` processes own their hosts'
                boards (worker.py), the client submits jobs to them
    inventory.py  a lab's boards (YAML), shared by both

The caller (characterize, regress, validate, calibrate) stays the only writer
of tables and history: it records what the executor yields, once per item.
"""
