// Per-sequence inference state (spec §7.1). A sequence's caches (sliding-window K=V ring,
// compressor tails and entries, indexer keys) live in its model's cache pool, in the slot the
// state holds; every count in them follows from n_past (window fill, the unfinished window's rows,
// entries emitted), so the state itself is the slot and n_past. A state belongs to the model that
// made it, takes its slot at its first forward and gives it back when destroyed; reset() starts a
// new sequence in the same slot.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace dsv4 {

// The cache pool's slot bookkeeping, shared by a model and its states (either may go first).
class CacheSlots {
 public:
  int32_t acquire() {
    if (!free_.empty()) {
      const int32_t s = free_.back();
      free_.pop_back();
      return s;
    }
    return n_slots_++;
  }
  void release(int32_t slot) { free_.push_back(slot); }
  int32_t n_slots() const { return n_slots_; }  // slots ever handed out: the pool must hold this many

 private:
  std::vector<int32_t> free_;
  int32_t n_slots_ = 0;
};

class SequenceState {
 public:
  SequenceState() = default;
  SequenceState(SequenceState&& o) noexcept
      : n_past_(o.n_past_), slot_(std::exchange(o.slot_, -1)), slots_(std::move(o.slots_)) {}
  SequenceState& operator=(SequenceState&& o) noexcept {
    if (this != &o) {
      release();
      n_past_ = o.n_past_;
      slot_ = std::exchange(o.slot_, -1);
      slots_ = std::move(o.slots_);
    }
    return *this;
  }
  SequenceState(const SequenceState&) = delete;
  SequenceState& operator=(const SequenceState&) = delete;
  ~SequenceState() { release(); }

  int64_t n_past() const { return n_past_; }  // tokens already consumed = position of the next token
  void reset() { n_past_ = 0; }

 private:
  friend class Model;
  void release() {
    if (slot_ >= 0 && slots_) slots_->release(slot_);
    slot_ = -1;
  }
  int64_t n_past_ = 0;
  int32_t slot_ = -1;  // in the model's cache pool; −1 until the first forward
  std::shared_ptr<CacheSlots> slots_;
};

}  // namespace dsv4
