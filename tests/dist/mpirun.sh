#!/usr/bin/env bash
# Runs a command under mpirun with N ranks: `mpirun.sh N COMMAND...`. Exit 77 (ctest: skipped) without an
# mpirun. Open MPI needs --oversubscribe to start more ranks than cores, and its root guard lifted in
# containers that run as root.
set -u
np=$1; shift
command -v mpirun >/dev/null 2>&1 || { echo "mpirun not found: skipping"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
extra=()
if mpirun --version 2>&1 | grep -q "Open MPI"; then extra=(--oversubscribe --mca btl_vader_single_copy_mechanism none); fi
exec mpirun "${extra[@]}" -np "$np" "$@"
