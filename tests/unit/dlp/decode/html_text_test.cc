// HTML read as text (html_text.cc): inline markup removed so split values read whole,
// tables as CSV rows (their own documents), attribute values kept, and the same text
// however the input is cut.
#include <gtest/gtest.h>

#include "archive_test_util.h"
#include "decode_test_util.h"

namespace egressguard::dlp::decode::testing {
namespace {

TEST(HtmlText, InlineMarkupAndCommentsInsideAValueAreRemoved) {
  const std::string body =
      "<html><body><p>Karte: <b>4539</b> <i>1488</i> <span style=\"color:red\">0343</span>"
      "<!-- x --> <font>6467</font></p><div>next</div></body></html>";
  const Recorder r = Normalize(body, H("text/html"));
  ASSERT_TRUE(r.Has("Karte: 4539 1488 0343 6467\n")) << r.layers.size();
  // Text bytes keep their exact spans: the value maps from its first digit to its last.
  const Span s = r.Find("4539 1488 0343 6467");
  EXPECT_EQ(s.begin, body.find("4539"));
  EXPECT_EQ(s.end, body.find("6467") + 4);
  // The inline element's attribute value is read in a layer of its own, not inside the line.
  EXPECT_TRUE(r.Has("color:red\n"));
}

TEST(HtmlText, ReferencesAreDecodedInTheTextBelow) {
  const Recorder r = Normalize("<p><strong>4539</strong>&nbsp;<strong>1488</strong>&nbsp;0343&#32;6467</p>",
                               H("text/html"));
  EXPECT_TRUE(r.Has("4539 1488 0343 6467"));
}

TEST(HtmlText, TableRowsAreCsvLinesInTheirOwnDocument) {
  const std::string body =
      "<html><body><h1>Export</h1>\n<table class=\"t\">\n  <tr>\n    <th>name</th>\n    <th>date_of_birth</th>\n"
      "    <th>address</th>\n  </tr>\n  <tr>\n    <td>Anna <b>Muster</b></td>\n    <td>1980-01-02</td>\n"
      "    <td>Bahnhofstrasse 1<br>8001 Z&uuml;rich</td>\n  </tr>\n  <tr><td>Hans</td><td>1975-03-04</td>"
      "<td><p>Seeweg 2</p></td></tr>\n</table><p>Total: 2</p></body></html>";
  const Recorder r = Normalize(body, H("text/html"));
  EXPECT_TRUE(r.Has("\nname,date_of_birth,address\nAnna Muster,1980-01-02,Bahnhofstrasse 1 8001 Z&uuml;rich\n"
                    "Hans,1975-03-04,Seeweg 2\n"))
      << (r.layers.empty() ? "" : r.layers.begin()->second);
  EXPECT_TRUE(r.Has("Export\n"));
  EXPECT_TRUE(r.Has("Total: 2"));
}

TEST(HtmlText, AttributeValuesAreReadAndTheirEscapesDecoded) {
  const Recorder r = Normalize(
      "<form><input name=\"c\" value=\"4539%201488%200343%206467\"><a href='https://x.example/?q=a'>x</a></form>",
      H("text/html"));
  EXPECT_TRUE(r.Has("4539 1488 0343 6467"));
  EXPECT_TRUE(r.Has("https://x.example/?q=a"));
}

TEST(HtmlText, LessThanThatOpensNoTagIsText) {
  const Recorder r = Normalize("<div>if a < b and 4 <3 then <b>45</b>39 1488 0343 6467</div>", H("text/html"));
  EXPECT_TRUE(r.Has("if a < b and 4 <3 then 4539 1488 0343 6467"));
}

TEST(HtmlText, SniffedByItsFirstTagOnlyWhenNothingElseSaysSo) {
  EXPECT_TRUE(Normalize("  <!DOCTYPE html><p>45<b>39</b> 1488 0343 6467</p>").Has("4539 1488 0343 6467"));
  EXPECT_TRUE(Normalize("<div>45<b>39</b> 1488 0343 6467</div>").Has("4539 1488 0343 6467"));
  // Text that merely contains a tag is not HTML: no view without tags is made.
  EXPECT_FALSE(Normalize("note: 45<b>39</b> 1488 0343 6467").Has("4539 1488"));
}

size_t PeakMemory(const std::string& body, Recorder* r) {
  NormalizerLimits limits;
  Normalizer n(H("text/html"), limits, *r);
  size_t peak = 0;
  for (size_t at = 0; at < body.size(); at += 4096) {
    n.Feed(std::string_view(body).substr(at, 4096));
    peak = std::max(peak, n.memory_bytes());
  }
  n.Finish();
  return peak;
}

TEST(HtmlText, AttributeValuesAreNotHeld) {
  // A table whose every cell carries an attribute: the values go out as they are read.
  std::string with, without;
  for (int i = 0; i < 40000; ++i) {
    with += "<tr><td class=\"c" + std::to_string(i) + "\">x</td></tr>";
    without += "<tr><td>c" + std::to_string(i) + "x</td></tr>";
  }
  Recorder r, base;
  const size_t peak = PeakMemory("<table>" + with + "</table>", &r);
  const size_t baseline = PeakMemory("<table>" + without + "</table>", &base);
  EXPECT_LT(peak, baseline + (256u << 10)) << baseline;
  EXPECT_TRUE(r.Has("\nc39999\n"));
}

TEST(HtmlText, ChunkingDoesNotChangeTheText) {
  std::string body = "<html><body>\n";
  for (int i = 0; i < 30; ++i) {
    body += "<p>row " + std::to_string(i) + ": <b>4539</b> <i title=\"t" + std::to_string(i) +
            "\">1488</i><!-- c --> 0343 6467 &amp; <a href=\"/x?i=" + std::to_string(i) + "\">link</a></p>\n";
  }
  body += "<table><tr><th>email</th><th>card</th></tr><tr><td>a@b.ch</td><td>4539 1488 0343 6467</td></tr></table>"
          "<p>a < b</p></body></html>";
  const Observed whole = Observe(Normalize(body, H("text/html")), true);
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{5}, size_t{64}, size_t{1000}}) {
    EXPECT_EQ(Observe(Normalize(body, H("text/html"), chunk), true), whole) << chunk;
  }
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
