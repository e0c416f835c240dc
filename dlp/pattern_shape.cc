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

struct Node {
  ByteSet alphabet;
  uint64_t min_digits = 0;
};

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
    }
    return result;
  }

  Node Concatenation() {
    Node result;
    while (!failed_ && !AtEnd() && Peek() != '|' && Peek() != ')') {
      Node atom = Atom();
      if (failed_) break;
      uint64_t min_rep = 1;
      if (!Quantifier(&min_rep)) break;
      result.alphabet |= atom.alphabet;
      result.min_digits += atom.min_digits * min_rep;
      if (result.min_digits > UINT32_MAX) result.min_digits = UINT32_MAX;
    }
    return result;
  }

  // Reads an optional quantifier; false on malformed input.
  bool Quantifier(uint64_t* min_rep) {
    if (AtEnd()) return true;
    char c = Peek();
    if (c == '?' || c == '*') {
      *min_rep = 0;
      ++pos_;
    } else if (c == '+') {
      *min_rep = 1;
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
      if (!AtEnd() && Peek() == ',') {
        ++pos_;
        while (!AtEnd() && Peek() >= '0' && Peek() <= '9') ++pos_;
      }
      if (AtEnd() || Peek() != '}') return Fail();
      ++pos_;
      *min_rep = lo;
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
