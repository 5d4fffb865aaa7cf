#!/usr/bin/env bash
# clusterml's two commands on a fresh machine:
#   ./dev.sh demo   - make .venv, install clusterml, run `clusterml demo` on 4 local MPI engines
#   ./dev.sh test   - make .venv, install clusterml with its test extras, run every test
#                     (as root it installs and starts a single-node Slurm for the Slurm tests,
#                     and stops it again afterwards)
#   ./dev.sh docs   - make .venv, install clusterml[docs], build the documentation site into
#                     docs/_build/html (the example notebooks are executed during the build)
# Any further arguments go to `clusterml demo` / pytest (test paths replace the whole suite).
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
venv=${CLUSTERML_VENV:-$here/.venv}
python=${PYTHON:-python3}

ensure_venv() {
    local extras=$1 stamp="$venv/.clusterml-installed-$1"
    if [ ! -x "$venv/bin/python" ]; then
        echo "==> creating $venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
    fi
    # reinstall when pyproject.toml changed since the last install
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "==> installing clusterml[$extras] into $venv"
        "$venv/bin/python" -m pip install -q -e ".[$extras]"
        touch "$stamp"
    fi
}

case "${1:-}" in
    demo)
        shift
        ensure_venv farm
        exec "$venv/bin/clusterml" demo "$@"
        ;;
    test)
        shift
        ensure_venv test,farm,bench
        export CLUSTERML_FAIL_ON_SKIP=1
        export PATH="$venv/bin:$PATH"
        # the whole suite, unless test paths were given (./dev.sh test tests/spmd -x)
        where=(tests)
        for arg in "$@"; do
            case $arg in tests|tests/*|*.py|*.py::*) where=() ;; esac
        done
        exec "$venv/bin/python" -m pytest "${where[@]}" -p no:cacheprovider "$@"
        ;;
    docs)
        shift
        ensure_venv docs,farm
        export PATH="$venv/bin:$PATH"
        exec "$venv/bin/python" -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
        ;;
    *)
        sed -n '2,10p' "$0"
        exit 2
        ;;
esac
