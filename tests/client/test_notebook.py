"""%load_ext clusterml, %cml start/status/stop and %px / %%px, executed in a real kernel (nbclient)."""

import os

import nbformat
import pytest
from clienthelp import ROOT, wait_no_processes
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(300)

CELLS = [
    "%load_ext clusterml",
    "cluster = %cml start -n 2",
    "%cml status",
    "%px r = cml.my_procid()\n%px print('rank', r, 'of', cml.num_procs())",
    "%%px\nimport numpy as np\nW = np.arange(8.0).reshape(4, 2)[2 * r:2 * r + 2]",
    "res = cluster.covariance().compute(cluster.ref('W'))\n"
    "import numpy as np\n"
    "assert np.allclose(res.covariance, np.cov(np.arange(8.0).reshape(4, 2).T))\n"
    "print('COV OK')",
    "%cml stop",
    # %cml sees a cluster made with cml.Cluster(...) too
    "c2 = cml.Cluster(n=2)",
    "%cml status",
    "%cml stop",
    "print('c2 running:', c2.running)",
]


def test_magics_in_a_real_kernel(ipython_dir, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    env = dict(os.environ, IPYTHONDIR=ipython_dir, OMP_NUM_THREADS="1",
               PYTHONPATH=ROOT + (os.pathsep + os.environ["PYTHONPATH"]
                                  if os.environ.get("PYTHONPATH") else ""))
    client = NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)  # starts the kernel with env, runs every cell, shuts the kernel down

    def text(i):
        out = []
        for o in nb.cells[i].outputs:
            if o.get("output_type") == "stream":
                out.append(o["text"])
            elif "data" in o:
                out.append(o["data"].get("text/plain", ""))
        return "".join(out)

    assert "2 engines" in text(1)
    assert "rank 0/2" in text(2) and "rank 1/2" in text(2)
    px = text(3)
    assert "rank 0 of 2" in px and "rank 1 of 2" in px
    assert "COV OK" in text(5)
    assert "stopped" in text(6)
    assert "rank 0/2" in text(8) and "rank 1/2" in text(8), text(8)
    assert "stopped" in text(9) and "c2 running: False" in text(10), (text(9), text(10))
    assert wait_no_processes() == []
