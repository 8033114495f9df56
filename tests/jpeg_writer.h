// A JPEG in memory whose every scanline is `row` (w x components bytes), for the readers' and the downloader's
// tests (libjpeg-turbo, as the readers decode with).
#pragma once

#include <jpeglib.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace kd::test {

// quality < 0: libjpeg's default.
inline std::string encode_jpeg(int w, int h, int components, J_COLOR_SPACE space, const std::vector<unsigned char>& row,
                               int quality = -1) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = static_cast<JDIMENSION>(w);
  c.image_height = static_cast<JDIMENSION>(h);
  c.input_components = components;
  c.in_color_space = space;
  jpeg_set_defaults(&c);
  if (quality >= 0) jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  std::vector<unsigned char> line = row;  // libjpeg wants a non-const row
  while (c.next_scanline < c.image_height) {
    JSAMPROW r = line.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  std::string out(reinterpret_cast<char*>(buf), size);
  jpeg_destroy_compress(&c);
  free(buf);
  return out;
}

}  // namespace kd::test
