"""The ``scorelab`` command line.

Before torch is imported, OpenMP threads are told to sleep rather than spin while they wait
(``OMP_WAIT_POLICY=PASSIVE``, unless the user set it): on a machine whose cores are busy with
other work, spinning threads made small-model training up to 10x slower (measured: 1088 ms
against 207 ms per U-Net step on the 2-core machine with two other jobs running).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
