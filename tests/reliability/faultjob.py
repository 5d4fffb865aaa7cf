"""An SPMD job for the kill tests: ``mpiexec -n N python faultjob.py <algorithm>``.

Runs one algorithm on tiny per-rank arrays (tests/faultcases.py).  The test sets
``CLUSTERML_INJECT_FAULT=<step>@<rank>:kill`` so a rank SIGKILLs itself inside the call;
without it every rank prints ``DONE <rank>``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from faultcases import block, build, cases

import clusterml as cml
from clusterml.spmd import REGISTRY

name = sys.argv[1]
cml.init()
rank, size = cml.my_procid(), cml.num_procs()
tables = build(size)
# the models are trained in this process first: no fault there
fault = os.environ.pop("CLUSTERML_INJECT_FAULT", None)
args, kwargs, inputs, extras, _ = cases(tables)[name]
if fault is not None:
    os.environ["CLUSTERML_INJECT_FAULT"] = fault
given = {k: block(tables[key], rank) for k, key in inputs.items()}
given.update(extras)
print(f"START {rank}", flush=True)
REGISTRY[name](*args, **kwargs, distributed=True).compute(**given)
print(f"DONE {rank}", flush=True)
cml.fini()
