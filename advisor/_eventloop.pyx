# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""advisor.queueing's event loop, compiled: a plan sizes its fleets with some 200 simulations of
11,000 requests each, one loop iteration per batch, which take about a second in Python.

The same policy, step for step and operation for operation, as queueing._loop (the tests hold
the two to identical results): pick the class of the oldest waiting request, form its batch,
start it on the GPU that frees first (a min-heap of the times each GPU frees).
"""
import numpy as np

from libc.math cimport INFINITY


def run(const double[:, ::1] arrivals, const Py_ssize_t[::1] counts,
        const double[:, ::1] table, const double[:, ::1] scales, bint scaled,
        Py_ssize_t n_gpus, double window_s):
    """(starts, ends, batches, gpu_waits): per class c, the start of each batch
    `starts[c, :batches[c]]` and the arrival index one past its last request `ends[c, ...]`, in
    formation order; and how many batches waited for a GPU.

    `arrivals[c]`: class c's arrival times, then at least `max_batch` infinities (so that no
    bounds check is needed: a class is exhausted when its next arrival is infinite);
    `counts[c]`: how many are real; `table[c, k - 1]`: the service time of a batch of k;
    `scales[c, i]` (read when `scaled`): the factor on a batch's time from its oldest request."""
    cdef Py_ssize_t n_classes = arrivals.shape[0], max_batch = table.shape[1]
    cdef Py_ssize_t last = max_batch - 1, width = 1
    cdef Py_ssize_t c, k, head, end, lo, hi, mid, pos, child, gpu_waits = 0
    cdef double first, fill, ready, start, done, dispatched = 0.0
    for c in range(n_classes):  # a class has at most one batch per request
        width = max(width, counts[c])
    starts_out = np.empty((n_classes, width))
    ends_out = np.empty((n_classes, width), dtype=np.intp)
    batches_out = np.zeros(n_classes, dtype=np.intp)
    heads_out = np.zeros(n_classes, dtype=np.intp)
    oldest_out = np.empty(n_classes)
    free_out = np.zeros(max(n_gpus, 1))
    cdef double[:, ::1] starts = starts_out
    cdef Py_ssize_t[:, ::1] ends = ends_out
    cdef Py_ssize_t[::1] batches = batches_out, heads = heads_out
    cdef double[::1] oldest = oldest_out, free = free_out
    for c in range(n_classes):
        oldest[c] = arrivals[c, 0]
    while True:
        first, c = INFINITY, -1
        for k in range(n_classes):  # the first class holding the oldest waiting request
            if oldest[k] < first:
                first, c = oldest[k], k
        if c < 0:
            break
        head = heads[c]
        fill = arrivals[c, head + last]  # when max_batch requests of the class have arrived
        ready = first + window_s
        if fill < ready:  # the batch fills before the window ends
            ready = fill
        if ready < dispatched:  # one dispatcher: the previous batch went out first
            ready = dispatched
        start = free[0]
        if start > ready:
            gpu_waits += 1
        else:
            start = ready
        dispatched = start
        if fill <= start:  # full
            end = head + max_batch
        else:  # one past the last request arrived by the start (bisect_right)
            lo, hi = head, head + last
            while lo < hi:
                mid = (lo + hi) // 2
                if start < arrivals[c, mid]:
                    hi = mid
                else:
                    lo = mid + 1
            end = lo
        done = start + table[c, end - head - 1] * (scales[c, head] if scaled else 1.0)
        pos = 0  # replace the heap's least free time by `done` and sift it down
        while True:
            child = 2 * pos + 1
            if child >= n_gpus:
                break
            if child + 1 < n_gpus and free[child + 1] < free[child]:
                child += 1
            if free[child] < done:
                free[pos] = free[child]
                pos = child
            else:
                break
        free[pos] = done
        starts[c, batches[c]] = start
        ends[c, batches[c]] = end
        batches[c] += 1
        heads[c] = end
        oldest[c] = arrivals[c, end]
    return starts_out, ends_out, batches_out, gpu_waits
