#include "dlp/pattern_shape.h"

#include <algorithm>
#include <cstddef>
#include <string>

namespace egressguard::dlp {

namespace {

using ByteSet = std::bitset<256>;

ByteSet Range(int lo, int hi) {
  ByteSet s;
  for (int c = lo; c <= hi; ++c) s.set(static_cast<size_t>(c));
  return s;
}

const ByteSet& Digits() {
  static const ByteSet kDigits = Range('0', '9');
  return kDigits;
}

ByteSet WordChars() { return Range('0', '9') | Range('a', 'z') | Range('A', 'Z') | Range('_', '_'); }

ByteSet SpaceChars() {
  ByteSet s;
  for (char c : std::string_view(" \t\n\r\f\v")) s.set(static_cast<unsigned char>(c));
  return s;
}

void AddCaseVariants(ByteSet* s) {
  for (int c = 'a'; c <= 'z'; ++c) {
    if (s->test(static_cast<size_t>(c)) || s->test(static_cast<size_t>(c - 32))) {
      s->set(static_cast<size_t>(c));
      s->set(static_cast<size_t>(c - 32));
    }
  }
}

constexpr uint64_t kUnbounded = UINT64_MAX;

uint64_t AddLen(uint64_t a, uint64_t b) {
  return a == kUnbounded || b == kUnbounded || a + b >= kUnbounded / 2 ? kUnbounded : a + b;
}
uint64_t MulLen(uint64_t len, uint64_t times) {
  return len == kUnbounded || (len != 0 && times > (kUnbounded / 2) / len) ? kUnbounded : len * times;
}

struct Node {
  ByteSet alphabet;
  uint64_t min_digits = 0;
  // Byte sets of the first kShapePrefix positions and the length range: enough to
  // combine prefixes through concatenation, alternation and repetition.
  std::array<ByteSet, kShapePrefix> prefix{};
  uint64_t min_len = 0;
  uint64_t max_len = 0;
};

// Prefix and lengths of a followed by b (alphabet and digits are combined by the caller).
void ConcatPrefix(Node* a, const Node& b) {
  std::array<ByteSet, kShapePrefix> out{};
  for (size_t i = 0; i < kShapePrefix; ++i) {
    if (a->max_len > i) out[i] = a->prefix[i];
    // b starts after a's L bytes, for every length L a can have.
    for (uint64_t len = a->min_len; len <= i && len <= a->max_len; ++len) out[i] |= b.prefix[i - len];
  }
  a->prefix = out;
  a->min_len = AddLen(a->min_len, b.min_len);
  a->max_len = AddLen(a->max_len, b.max_len);
}

// Recursive-descent reader; `failed` is sticky and any construct outside the subset sets it.
class Reader {
 public:
  Reader(std::string_view p, bool caseless) : p_(p), caseless_(caseless) {}

  std::optional<PatternShape> Run() {
    Node n = Alternation();
    if (failed_ || pos_ != p_.size()) return std::nullopt;
    PatternShape shape;
    shape.alphabet = n.alphabet;
    if (caseless_) AddCaseVariants(&shape.alphabet);
    shape.min_digits = static_cast<uint32_t>(n.min_digits > UINT32_MAX ? UINT32_MAX : n.min_digits);
    shape.anchored = anchored_;
    shape.min_len = static_cast<uint32_t>(std::min<uint64_t>(n.min_len, UINT32_MAX));
    for (size_t i = 0; i < kShapePrefix; ++i) {
      shape.prefix[i] = n.prefix[i];
      if (caseless_) AddCaseVariants(&shape.prefix[i]);
    }
    return shape;
  }

 private:
  bool AtEnd() const { return pos_ >= p_.size(); }
  char Peek() const { return p_[pos_]; }

  Node Alternation() {
    Node result = Concatenation();
    while (!failed_ && !AtEnd() && Peek() == '|') {
      ++pos_;
      Node next = Concatenation();
      result.alphabet |= next.alphabet;
      result.min_digits = std::min(result.min_digits, next.min_digits);
      for (size_t i = 0; i < kShapePrefix; ++i) result.prefix[i] |= next.prefix[i];
      result.min_len = std::min(result.min_len, next.min_len);
      result.max_len = std::max(result.max_len, next.max_len);
    }
    return result;
  }

  Node Concatenation() {
    Node result;
    while (!failed_ && !AtEnd() && Peek() != '|' && Peek() != ')') {
      Node atom = Atom();
      if (failed_) break;
      uint64_t min_rep = 1;
      uint64_t max_rep = 1;
      if (!Quantifier(&min_rep, &max_rep)) break;
      // Past kShapePrefix copies more of them change no prefix position, only lengths.
      const uint64_t copies = std::min<uint64_t>(min_rep, kShapePrefix + 1);
      for (uint64_t k = 0; k < copies; ++k) ConcatPrefix(&result, atom);
      if (min_rep > copies) {
        result.min_len = AddLen(result.min_len, MulLen(atom.min_len, min_rep - copies));
        result.max_len = AddLen(result.max_len, MulLen(atom.max_len, min_rep - copies));
      }
      if (max_rep != min_rep) {
        Node optional = atom;  // atom or nothing
        optional.min_len = 0;
        const uint64_t extra = max_rep == kUnbounded ? kUnbounded : max_rep - min_rep;
        const uint64_t opt_copies = std::min<uint64_t>(extra, kShapePrefix + 1);
        for (uint64_t k = 0; k < opt_copies; ++k) ConcatPrefix(&result, optional);
        if (extra == kUnbounded) {
          if (atom.max_len > 0) result.max_len = kUnbounded;
        } else if (extra > opt_copies) {
          result.max_len = AddLen(result.max_len, MulLen(atom.max_len, extra - opt_copies));
        }
      }
      result.alphabet |= atom.alphabet;
      result.min_digits += atom.min_digits * min_rep;
      if (result.min_digits > UINT32_MAX) result.min_digits = UINT32_MAX;
    }
    return result;
  }

  // Reads an optional quantifier; false on malformed input.
  bool Quantifier(uint64_t* min_rep, uint64_t* max_rep) {
    if (AtEnd()) return true;
    char c = Peek();
    if (c == '?' || c == '*') {
      *min_rep = 0;
      *max_rep = c == '?' ? 1 : kUnbounded;
      ++pos_;
    } else if (c == '+') {
      *min_rep = 1;
      *max_rep = kUnbounded;
      ++pos_;
    } else if (c == '{') {
      size_t save = pos_;
      ++pos_;
      uint64_t lo = 0;
      bool digits = false;
      while (!AtEnd() && Peek() >= '0' && Peek() <= '9') {
        lo = lo * 10 + static_cast<uint64_t>(Peek() - '0');
        if (lo > 100000) return Fail();
        digits = true;
        ++pos_;
      }
      if (!digits) {  // "{" not followed by a count is a literal brace in PCRE
        pos_ = save;
        return true;
      }
      uint64_t hi = lo;
      if (!AtEnd() && Peek() == ',') {
        ++pos_;
        bool hi_digits = false;
        hi = 0;
        while (!AtEnd() && Peek() >= '0' && Peek() <= '9') {
          hi = hi * 10 + static_cast<uint64_t>(Peek() - '0');
          if (hi > 100000) return Fail();
          hi_digits = true;
          ++pos_;
        }
        if (!hi_digits) hi = kUnbounded;
        if (hi < lo) return Fail();
      }
      if (AtEnd() || Peek() != '}') return Fail();
      ++pos_;
      *min_rep = lo;
      *max_rep = hi;
    } else {
      return true;
    }
    if (!AtEnd() && (Peek() == '?' || Peek() == '+')) ++pos_;  // lazy / possessive
    return true;
  }

  Node Single(const ByteSet& s) {
    Node n;
    n.alphabet = s;
    n.min_digits = (s.any() && (s & ~Digits()).none()) ? 1 : 0;
    n.prefix[0] = s;
    n.min_len = n.max_len = 1;
    return n;
  }

  Node Atom() {
    char c = Peek();
    switch (c) {
      case '(':
        return Group();
      case '[':
        return Single(Class());
      case '.':
        ++pos_;
        return Single(ByteSet().set());
      case '^':
      case '$':
        ++pos_;
        anchored_ = true;
        return Node{};
      case '\\': {
        ByteSet s;
        bool zero_width = false;
        Escape(&s, &zero_width, /*in_class=*/false);
        return zero_width ? Node{} : Single(s);
      }
      case '*':
      case '+':
      case '?':
      case '{':
        if (c != '{') {
          Fail();
          return Node{};
        }
        [[fallthrough]];
      default: {
        ++pos_;
        ByteSet s;
        s.set(static_cast<unsigned char>(c));
        return Single(s);
      }
    }
  }

  Node Group() {
    ++pos_;  // '('
    if (!AtEnd() && Peek() == '?') {
      ++pos_;
      if (AtEnd()) return FailNode();
      if (Peek() == ':') {
        ++pos_;
      } else if (Peek() == '<' && pos_ + 1 < p_.size() && p_[pos_ + 1] != '=' && p_[pos_ + 1] != '!') {
        // named group (?<name>...)
        while (!AtEnd() && Peek() != '>') ++pos_;
        if (AtEnd()) return FailNode();
        ++pos_;
      } else {
        // inline flags: (?i) (?s) (?m) (?x) and (?i: ...); anything else (lookarounds...) fails
        bool scoped = false;
        while (!AtEnd() && Peek() != ')' && Peek() != ':') {
          char f = Peek();
          if (f == 'i') {
            caseless_ = true;  // widening the alphabet for the whole pattern is conservative
          } else if (f == 'x') {
            return FailNode();  // extended syntax changes what whitespace means
          } else if (f != 's' && f != 'm' && f != '-') {
            return FailNode();
          }
          ++pos_;
        }
        if (AtEnd()) return FailNode();
        if (Peek() == ')') {
          ++pos_;
          return Node{};
        }
        scoped = true;
        ++pos_;  // ':'
        (void)scoped;
      }
    }
    Node inner = Alternation();
    if (failed_ || AtEnd() || Peek() != ')') return FailNode();
    ++pos_;
    return inner;
  }

  ByteSet Class() {
    ++pos_;  // '['
    bool negate = false;
    if (!AtEnd() && Peek() == '^') {
      negate = true;
      ++pos_;
    }
    ByteSet s;
    bool first = true;
    while (!AtEnd() && (Peek() != ']' || first)) {
      first = false;
      if (Peek() == '[' && pos_ + 1 < p_.size() && p_[pos_ + 1] == ':') {
        Fail();  // POSIX classes: outside the subset
        return s;
      }
      int lo = -1;
      ByteSet item;
      if (Peek() == '\\') {
        bool zero_width = false;
        Escape(&item, &zero_width, /*in_class=*/true);
        if (failed_) return s;
        if (item.count() == 1) {
          for (int b = 0; b < 256; ++b)
            if (item.test(static_cast<size_t>(b))) lo = b;
        }
      } else {
        lo = static_cast<unsigned char>(Peek());
        item.set(static_cast<size_t>(lo));
        ++pos_;
      }
      // a range lo-hi
      if (lo >= 0 && pos_ + 1 < p_.size() && Peek() == '-' && p_[pos_ + 1] != ']') {
        ++pos_;
        int hi;
        if (Peek() == '\\') {
          ByteSet h;
          bool zw = false;
          Escape(&h, &zw, true);
          if (failed_ || h.count() != 1) {
            Fail();
            return s;
          }
          hi = 0;
          for (int b = 0; b < 256; ++b)
            if (h.test(static_cast<size_t>(b))) hi = b;
        } else {
          hi = static_cast<unsigned char>(Peek());
          ++pos_;
        }
        if (hi < lo) {
          Fail();
          return s;
        }
        item = Range(lo, hi);
      }
      s |= item;
    }
    if (AtEnd()) {
      Fail();
      return s;
    }
    ++pos_;  // ']'
    if (caseless_) AddCaseVariants(&s);
    return negate ? ~s : s;
  }

  static int Hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  void Escape(ByteSet* s, bool* zero_width, bool in_class) {
    ++pos_;  // '\\'
    if (AtEnd()) {
      Fail();
      return;
    }
    char c = Peek();
    ++pos_;
    switch (c) {
      case 'd': *s = Digits(); return;
      case 'D': *s = ~Digits(); return;
      case 'w': *s = WordChars(); return;
      case 'W': *s = ~WordChars(); return;
      case 's': *s = SpaceChars(); return;
      case 'S': *s = ~SpaceChars(); return;
      case 'n': s->set('\n'); return;
      case 't': s->set('\t'); return;
      case 'r': s->set('\r'); return;
      case 'f': s->set('\f'); return;
      case 'v': s->set('\v'); return;
      case 'e': s->set(0x1b); return;
      case 'b':
        if (in_class) {
          s->set('\b');
        } else {
          *zero_width = true;
        }
        return;
      case 'B':
        if (in_class) break;
        *zero_width = true;
        return;
      case 'A':
      case 'z':
      case 'Z':
      case 'G':
        if (in_class) break;
        *zero_width = true;
        anchored_ = true;
        return;
      case 'x': {
        if (pos_ + 1 < p_.size() && Hex(p_[pos_]) >= 0 && Hex(p_[pos_ + 1]) >= 0) {
          s->set(static_cast<size_t>(Hex(p_[pos_]) * 16 + Hex(p_[pos_ + 1])));
          pos_ += 2;
          return;
        }
        break;
      }
      default:
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
          s->set(static_cast<unsigned char>(c));  // escaped punctuation is itself
          return;
        }
        break;
    }
    Fail();  // \p, \Q, backreferences, octal...: outside the subset
  }

  bool Fail() {
    failed_ = true;
    return false;
  }
  Node FailNode() {
    failed_ = true;
    return Node{};
  }

  std::string_view p_;
  size_t pos_ = 0;
  bool caseless_;
  bool anchored_ = false;
  bool failed_ = false;
};

}  // namespace

std::optional<PatternShape> AnalyzePattern(std::string_view pattern, bool caseless) {
  return Reader(pattern, caseless).Run();
}

}  // namespace egressguard::dlp
