#include "dlp/decode/documents.h"

namespace egressguard::dlp::decode {

DecoderPtr ChooseDocumentDecoder(const DocHint&, std::string_view, Layer&) { return nullptr; }

}  // namespace egressguard::dlp::decode
