// kvworld-cli convert-weights: the same model in another weight format (docs/design.md "Int8 weights"),
// written as a new model folder in one unit.
#include <cstdio>

#include "cli_common.h"
#include "frontend.h"
#include "kvworld/fileio.h"

namespace kvw::cli {

int run_convert_weights(const std::string& model_dir, const std::string& out_dir, const std::string& dtype) {
    const WeightFormat format = dtype == "int8" ? WeightFormat::Int8 : WeightFormat::BF16;
    // No --overwrite: a converted model is written into a new or empty folder only, and appears there whole
    // (an interrupted conversion leaves nothing behind).
    frontend::OutputFolder output(out_dir, /*overwrite=*/false, {});
    const std::vector<std::string> files = convert_model_weights(model_dir, output.staging(), format);
    output.commit();
    const WeightFilesSummary before = summarize_weight_files(model_dir);
    const WeightFilesSummary after = summarize_weight_files(output.target());
    std::printf(
        "wrote %s: %zu weight file%s, %s on disk (was %s); %.2f M parameters as int8, %.2f M as float\n",
        output.target().string().c_str(), files.size(), files.size() == 1 ? "" : "s",
        format_bytes(static_cast<double>(after.bytes_on_disk)).c_str(),
        format_bytes(static_cast<double>(before.bytes_on_disk)).c_str(), after.int8_parameters / 1e6,
        after.float_parameters / 1e6);
    return 0;
}

}  // namespace kvw::cli
