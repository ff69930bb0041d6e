"""The lab: board locks (:mod:`harness.lab.locks`), several boards in parallel under pytest-xdist
(:mod:`harness.lab.xdist_boards`) and remote places through labgrid (:mod:`harness.lab.labgrid`)."""
