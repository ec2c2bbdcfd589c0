// Stream priorities of a forked computation (Backend::begin_branch, the benches' branches).
#pragma once

#include <cuda_runtime.h>

namespace dsv4::cuda {

// The device's highest stream priority (numerically the least), for the stream that carries a
// forked computation's critical path; a branch stays at the default, the lowest. When both have
// blocks waiting, the block scheduler serves the critical path first. Never an error: if the query
// fails, 0 (the default priority).
int critical_stream_priority();

// Graphs are instantiated with this: kernel nodes keep the priority of the stream they were
// captured from (without it a graph runs at the priority of the stream it is launched into).
constexpr unsigned long long kGraphInstantiateFlags = cudaGraphInstantiateFlagUseNodePriority;

}  // namespace dsv4::cuda
