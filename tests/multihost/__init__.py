"""Tests on the three-host Slurm cluster of slurm/dev/multihost.sh (a package: its fixtures are
package-scoped, so the cluster is taken down as soon as these tests are done)."""
