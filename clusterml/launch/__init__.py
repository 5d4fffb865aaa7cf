"""Launching clusterml: ipyparallel profiles, Slurm batch templates, CLI helpers.

Imports ipyparallel at most, never mpi4py.
"""
