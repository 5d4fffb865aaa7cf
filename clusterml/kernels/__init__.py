"""Pure local math: partial results of a block of rows, merges, finalizes.

Nothing here knows about MPI: every algorithm can be run in one process by
splitting the rows into chunks, computing a partial of each and merging them,
which is exactly what the distributed run does with the chunks on different
ranks.
"""
