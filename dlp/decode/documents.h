#pragma once
// Documents the decoder tree reads as text: Office Open XML and OpenDocument parts
// (XML with the tags removed), PDF content streams. Chosen by TransformSlot from a
// document's name (its archive member path) and first bytes.

#include <string_view>

#include "dlp/decode/layer.h"

namespace egressguard::dlp::decode {

// A decoder for this document when it is one of the kinds above, else nullptr.
// `sniff` is the document's first bytes (up to the sniff prefix).
DecoderPtr ChooseDocumentDecoder(const DocHint& hint, std::string_view sniff, Layer& out);

}  // namespace egressguard::dlp::decode
