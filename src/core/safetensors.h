// safetensors files: a strict reader (mmap; every header field validated before any tensor byte
// is touched), sharded checkpoints through model.safetensors.index.json, and a writer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace dsv4 {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t begin = 0;  // byte offsets relative to the start of the data section
  int64_t end = 0;
  const uint8_t* data = nullptr;  // mapped bytes [begin, end)
  std::string file;               // the shard holding it (file name only)

  int64_t numel() const;
  int64_t nbytes() const { return end - begin; }
  std::string shape_string() const;  // "[4096, 1024]"
};

// One mapped .safetensors file.
class SafetensorsFile {
 public:
  static Result<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Parses and validates a header (the JSON after the 8-byte length) against a data section of
// `data_size` bytes. Exposed for the fuzz target and the bad-input tests.
Result<std::map<std::string, TensorInfo>> parse_safetensors_header(
    const std::string& json, int64_t data_size, std::map<std::string, std::string>* metadata);

// A checkpoint directory: model.safetensors.index.json + shards, or one model.safetensors.
class Checkpoint {
 public:
  static Result<Checkpoint> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  size_t n_files() const { return files_.size(); }

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorInfo> tensors_;
};

// Writer: collects tensors, then writes one file (or shards + index).
class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  void add_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values);
  Status write_file(const std::string& path) const;
  // Splits into shards of at most ~shard_bytes each plus model.safetensors.index.json.
  Status write_sharded(const std::string& dir, int64_t shard_bytes) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  Status write_entries(const std::string& path, const std::vector<const Entry*>& entries) const;
  std::vector<Entry> entries_;
};

}  // namespace dsv4
