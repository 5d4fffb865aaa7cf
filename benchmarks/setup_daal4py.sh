#!/usr/bin/env bash
# Create the virtual environment(s) with daal4py's SPMD mode that benchmarks/bench.py compares
# clusterml with, check a 2-rank run in each, and print the --daal4py-python value.
#
#   benchmarks/setup_daal4py.sh [current|legacy|both] [VENV] [LEGACY_VENV]
#
#   current  daal4py 2026.2 (scikit-learn-intelex 2026.2.0 + impi-rt): the reference; it has
#            no multinomial naive Bayes                       (default VENV /tmp/clusterml-d4p-venv)
#   legacy   daal4py 2024.7.0 + scikit-learn 1.5.2 + packaging + impi-rt: the last with naive
#            Bayes                                     (default LEGACY_VENV /tmp/clusterml-d4p2024-venv)
#   both     (default) both; bench.py runs each algorithm with the first environment that has it
#
# Environment: CLUSTERML_D4P_VENV, CLUSTERML_D4P_LEGACY_VENV (the two directories),
# PYTHON (interpreter to create them with; default python3.11, else python3).
# Each environment also gets mpi4py (the benchmark worker's barriers and max-over-ranks);
# it binds to that environment's Intel MPI.  An existing environment is reused (pip only
# adds what is missing); delete the directory to start over.
set -euo pipefail

WHICH=${1:-both}
VENV=${2:-${CLUSTERML_D4P_VENV:-/tmp/clusterml-d4p-venv}}
LEGACY_VENV=${3:-${CLUSTERML_D4P_LEGACY_VENV:-/tmp/clusterml-d4p2024-venv}}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

# Versions this script was verified with (Python 3.11, Debian 12, 2026-11).  impi-rt is pinned
# to the same Intel MPI in both environments so the two measure the same transport.
CURRENT_PKGS=("scikit-learn-intelex==2026.2.0" "impi-rt==2021.18.1" "mpi4py")
LEGACY_PKGS=("daal4py==2024.7.0" "scikit-learn==1.5.2" "packaging" "impi-rt==2021.18.1" "mpi4py")

case $WHICH in current|legacy|both) ;; *) echo "usage: $0 [current|legacy|both] [VENV] [LEGACY_VENV]" >&2; exit 2;; esac

make_venv() {  # dir packages...
    local dir=$1; shift
    if [ ! -x "$dir/bin/python" ]; then
        echo "# creating $dir with $PYTHON" >&2
        "$PYTHON" -m venv "$dir"
        "$dir/bin/python" -m pip install -q --upgrade pip
    fi
    echo "# installing into $dir: $*" >&2
    "$dir/bin/python" -m pip install -q "$@"
}

check_venv() {  # dir: a 2-rank SPMD run must print the world size 2 on both ranks
    local dir=$1 out
    # Intel MPI's mpirun is a script that runs mpiexec.hydra from PATH: the environment's
    # bin directory first.  Single machine: shared-memory transport only (older impi-rt
    # wheels abort in MPI_Init without it; the benchmark worker sets the same default).
    out=$(PATH="$dir/bin:$PATH" I_MPI_FABRICS=${I_MPI_FABRICS:-shm} timeout 300 \
        "$dir/bin/mpirun" -n 2 "$dir/bin/python" -c \
        "import daal4py as d4p; d4p.daalinit(); print(d4p.num_procs()); d4p.daalfini()")
    echo "$out" | sed "s|^|# $dir 2-rank check: |" >&2
    if [ "$(echo "$out" | grep -cx 2)" != 2 ]; then
        echo "error: the 2-rank daal4py run in $dir did not print 2 twice" >&2
        exit 1
    fi
    PATH="$dir/bin:$PATH" I_MPI_FABRICS=${I_MPI_FABRICS:-shm} timeout 300 \
        "$dir/bin/mpirun" -n 2 "$dir/bin/python" -c "
import daal4py as d4p, importlib.metadata as md
from mpi4py import MPI
if MPI.COMM_WORLD.Get_rank() == 0:
    pk = {}
    for p in ('daal', 'daal4py', 'scikit-learn-intelex', 'scikit-learn', 'numpy', 'impi-rt', 'mpi4py'):
        try:
            pk[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    print('# versions:', ' '.join(f'{k}=={v}' for k, v in pk.items()))
    print('# mpi4py world size', MPI.COMM_WORLD.Get_size(), '-', MPI.Get_library_version().splitlines()[0])
    print('# multinomial naive Bayes:', hasattr(d4p, 'multinomial_naive_bayes_training'))
d4p.daalfini()
" >&2
}

pythons=()
if [ "$WHICH" != legacy ]; then
    make_venv "$VENV" "${CURRENT_PKGS[@]}"
    check_venv "$VENV"
    pythons+=("$VENV/bin/python")
fi
if [ "$WHICH" != current ]; then
    make_venv "$LEGACY_VENV" "${LEGACY_PKGS[@]}"
    check_venv "$LEGACY_VENV"
    pythons+=("$LEGACY_VENV/bin/python")
fi
echo "# pass to benchmarks/bench.py (or export CLUSTERML_DAAL4PY_PYTHON):" >&2
(IFS=,; echo "--daal4py-python ${pythons[*]}")
