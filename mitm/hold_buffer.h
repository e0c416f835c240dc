#pragma once
// Bytes held back in order and released from the front (the body relay, the raw relay,
// the WebSocket relay). Internal to mitm/.
//
// Released bytes are dropped only once they are most of the buffer: a long hold (values
// held for a threshold, up to the hold limit) then costs no move of the whole buffer per
// release, only an amortized one.

#include <cstddef>
#include <string>
#include <string_view>

namespace egressguard::mitm {

class HoldBuffer {
 public:
  void Append(std::string_view bytes) { data_.append(bytes); }
  // The storage behind the held bytes, for appending in place (what is appended is held).
  std::string* tail() { return &data_; }
  std::string_view view() const { return std::string_view(data_).substr(front_); }
  size_t size() const { return data_.size() - front_; }
  bool empty() const { return size() == 0; }
  // Releases the first n held bytes (n <= size()).
  void Drop(size_t n) {
    front_ += n;
    if (front_ == data_.size()) {
      data_.clear();
      front_ = 0;
    } else if (front_ > data_.size() / 2) {
      data_.erase(0, front_);
      front_ = 0;
    }
  }
  void Clear() {
    data_.clear();
    front_ = 0;
  }

 private:
  std::string data_;
  size_t front_ = 0;
};

}  // namespace egressguard::mitm
