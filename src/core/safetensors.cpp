#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

namespace dsv4 {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Largest header accepted: real checkpoints have < 2 MB headers; this bounds the allocation a
// corrupted length could trigger.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string file_name(const std::string& path) {
  return fs::path(path).filename().string();
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorInfo::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Result<std::map<std::string, TensorInfo>> parse_safetensors_header(
    const std::string& text, int64_t data_size, std::map<std::string, std::string>* metadata) {
  json header = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return Status::error("header is not valid JSON");
  if (!header.is_object()) return Status::error("header is not a JSON object");

  std::map<std::string, TensorInfo> tensors;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Status::error("__metadata__: expected an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return Status::errorf("__metadata__: field '{}' expected a string", m.key());
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) return Status::errorf("{}: expected an object", where);
    if (!v.contains("dtype") || !v["dtype"].is_string())
      return Status::errorf("{}: missing string field 'dtype'", where);
    const auto dtype = dtype_from_name(v["dtype"].get<std::string>());
    if (!dtype)
      return Status::errorf("{}: unknown dtype '{}'; expected one of {}", where,
                            v["dtype"].get<std::string>(), known_dtype_names());
    if (!v.contains("shape") || !v["shape"].is_array())
      return Status::errorf("{}: missing array field 'shape'", where);
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      return Status::errorf("{}: field 'data_offsets' expected [begin, end]", where);

    TensorInfo t;
    t.name = name;
    t.dtype = *dtype;
    int64_t numel = 1;
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned())
        return Status::errorf("{}: shape entries must be non-negative integers, got {}", where, d.dump());
      const uint64_t dim = d.get<uint64_t>();
      if (dim > uint64_t(std::numeric_limits<int64_t>::max()) ||
          (dim > 0 && uint64_t(numel) > uint64_t(std::numeric_limits<int64_t>::max()) / dim))
        return Status::errorf("{}: shape {} overflows", where, v["shape"].dump());
      numel *= int64_t(dim);
      t.shape.push_back(int64_t(dim));
    }
    for (const json& o : v["data_offsets"])
      if (!o.is_number_unsigned())
        return Status::errorf("{}: data_offsets must be non-negative integers, got {}", where,
                              v["data_offsets"].dump());
    const uint64_t begin = v["data_offsets"][0].get<uint64_t>();
    const uint64_t end = v["data_offsets"][1].get<uint64_t>();
    if (begin > end) return Status::errorf("{}: data_offsets [{}, {}] end before begin", where, begin, end);
    if (end > uint64_t(data_size))
      return Status::errorf("{}: data_offsets [{}, {}] out of range; data section has {} bytes", where, begin,
                            end, data_size);
    t.begin = int64_t(begin);
    t.end = int64_t(end);
    const int64_t elem = int64_t(dtype_size(*dtype));
    if (numel > std::numeric_limits<int64_t>::max() / elem)
      return Status::errorf("{}: shape {} overflows", where, v["shape"].dump());
    if (t.nbytes() != numel * elem)
      return Status::errorf("{}: byte size {} does not match shape {} × {} ({} bytes expected)", where,
                            t.nbytes(), t.shape_string(), dtype_name(*dtype), numel * elem);
    tensors.emplace(name, std::move(t));
  }

  // Overlap check on the sorted byte ranges (empty tensors occupy nothing).
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [_, t] : tensors)
    if (t.nbytes() > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      return Status::errorf("tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", by_offset[i - 1]->name,
                            by_offset[i - 1]->begin, by_offset[i - 1]->end, by_offset[i]->name,
                            by_offset[i]->begin, by_offset[i]->end);
  return tensors;
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  const std::string where = file_name(path);
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Status::errorf("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::errorf("{}: not a regular file", path);
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Status::errorf("{}: file has {} bytes; expected at least 8 (header length)", where, size);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return Status::errorf("{}: mmap failed: {}", path, std::strerror(errno));

  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = map;
  f->map_size_ = size;
  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8)
    return Status::errorf("{}: header length {} runs past the end of the file ({} bytes)", where, header_len,
                          size);
  if (header_len > kMaxHeaderBytes)
    return Status::errorf("{}: header length {}; expected at most {}", where, header_len, kMaxHeaderBytes);
  const std::string text(reinterpret_cast<const char*>(bytes + 8), header_len);
  const int64_t data_size = int64_t(size - 8 - header_len);
  auto tensors = parse_safetensors_header(text, data_size, &f->metadata_);
  if (!tensors.ok()) return tensors.status().with_context(where);
  f->tensors_ = std::move(tensors).value();
  const uint8_t* data = bytes + 8 + header_len;
  for (auto& [_, t] : f->tensors_) {
    t.data = data + t.begin;
    t.file = where;
  }
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Result<Checkpoint> Checkpoint::open(const std::string& dir) {
  Checkpoint c;
  c.dir_ = dir;
  if (!fs::is_directory(dir)) return Status::errorf("{}: not a directory", dir);
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";

  if (fs::exists(index_path)) {
    std::ifstream in(index_path);
    json index = json::parse(in, nullptr, false);
    const std::string where = "model.safetensors.index.json";
    if (index.is_discarded()) return Status::errorf("{}: not valid JSON", where);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      return Status::errorf("{}: missing object field 'weight_map'", where);
    std::map<std::string, std::vector<std::string>> by_shard;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        return Status::errorf("{}: weight_map['{}'] expected a file name", where, it.key());
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..")
        return Status::errorf("{}: weight_map['{}'] = '{}'; expected a file name in the directory", where,
                              it.key(), shard);
      by_shard[shard].push_back(it.key());
    }
    if (by_shard.empty()) return Status::errorf("{}: weight_map is empty", where);
    for (const auto& [shard, names] : by_shard) {
      const fs::path p = fs::path(dir) / shard;
      if (!fs::exists(p))
        return Status::errorf("{}: shard '{}' (holding '{}' and {} more) is missing from disk", where, shard,
                              names.front(), names.size() - 1);
      DSV4_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(p.string()));
      std::shared_ptr<SafetensorsFile> shared(std::move(file));
      for (const auto& name : names) {
        const TensorInfo* t = shared->find(name);
        if (!t)
          return Status::errorf("{}: tensor '{}' is listed in the index but absent from the shard", shard,
                                name);
        c.tensors_.emplace(name, *t);
      }
      for (const auto& [name, t] : shared->tensors())
        if (!c.tensors_.count(name))
          return Status::errorf("{}: tensor '{}' is in the shard but not in {}", shard, name, where);
      c.files_.push_back(std::move(shared));
    }
    return c;
  }
  if (fs::exists(single_path)) {
    DSV4_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(single_path.string()));
    std::shared_ptr<SafetensorsFile> shared(std::move(file));
    c.tensors_ = shared->tensors();
    c.files_.push_back(std::move(shared));
    return c;
  }
  return Status::errorf("{}: no model.safetensors.index.json or model.safetensors", dir);
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            std::vector<uint8_t> bytes) {
  entries_.push_back({name, dtype, std::move(shape), std::move(bytes)});
}

void SafetensorsWriter::add_f32(const std::string& name, std::vector<int64_t> shape,
                                const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  add(name, DType::kF32, std::move(shape), std::move(bytes));
}

Status SafetensorsWriter::write_entries(const std::string& path,
                                        const std::vector<const Entry*>& entries) const {
  json header = json::object();
  int64_t offset = 0;
  for (const Entry* e : entries) {
    header[e->name] = {{"dtype", std::string(dtype_name(e->dtype))},
                       {"shape", e->shape},
                       {"data_offsets", {offset, offset + int64_t(e->bytes.size())}}};
    offset += int64_t(e->bytes.size());
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  std::ofstream out(path, std::ios::binary);
  if (!out) return Status::errorf("{}: cannot open for writing", path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const Entry* e : entries)
    out.write(reinterpret_cast<const char*>(e->bytes.data()), std::streamsize(e->bytes.size()));
  if (!out) return Status::errorf("{}: write failed", path);
  return {};
}

Status SafetensorsWriter::write_file(const std::string& path) const {
  std::vector<const Entry*> all;
  for (const auto& e : entries_) all.push_back(&e);
  return write_entries(path, all);
}

Status SafetensorsWriter::write_sharded(const std::string& dir, int64_t shard_bytes) const {
  std::vector<std::vector<const Entry*>> shards(1);
  int64_t in_shard = 0;
  for (const auto& e : entries_) {
    if (in_shard > 0 && in_shard + int64_t(e.bytes.size()) > shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&e);
    in_shard += int64_t(e.bytes.size());
  }
  json weight_map = json::object();
  int64_t total = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    DSV4_RETURN_IF_ERROR(write_entries((fs::path(dir) / name).string(), shards[s]));
    for (const Entry* e : shards[s]) {
      weight_map[e->name] = name;
      total += int64_t(e->bytes.size());
    }
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  std::ofstream out(fs::path(dir) / "model.safetensors.index.json");
  out << index.dump(2) << "\n";
  if (!out) return Status::errorf("{}: cannot write model.safetensors.index.json", dir);
  return {};
}

}  // namespace dsv4
