// critical_stream_priority (stream_priority.h).
#include "cuda/stream_priority.h"

namespace dsv4::cuda {

int critical_stream_priority() {
  int least = 0, greatest = 0;
  if (cudaDeviceGetStreamPriorityRange(&least, &greatest) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return greatest;
}

}  // namespace dsv4::cuda
