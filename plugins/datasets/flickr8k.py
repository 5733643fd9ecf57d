"""Image description requests from a local Flickr8k folder.

The folder layout is Kaggle's Flickr8k one:

    FOLDER/
      captions.txt    CSV with a header line "image,caption": an image file
                      name and one of its captions per line (several lines
                      per image)
      Images/         the image files named in the first column
                      (or the files directly in FOLDER)

--dataset-path is the folder (or its captions.txt).  Each distinct image, in
file order, becomes one chat request: the text "Describe the image." and the
image as an OpenAI `image_url` part holding a data URL
(`data:image/jpeg;base64,...`), for vision models behind an OpenAI-compatible
API.  The captions are not sent; --min/--max-prompt-length apply to the text.
"""
from __future__ import annotations

import base64
import csv
import os
from typing import Iterator

from engine.errors import DatasetError
from plugins.base import DatasetPluginBase

WHAT = ('a Flickr8k folder: captions.txt (CSV with header "image,caption") and the images it names, '
        'in Images/ or beside it')
CAPTION_FILES = ("captions.txt", "captions.csv")
IMAGE_DIRS = ("Images", "images", "Flicker8k_Dataset", "")
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
        ".gif": "image/gif", ".bmp": "image/bmp"}
PROMPT = "Describe the image."


class Flickr8kDataset(DatasetPluginBase):
    """Describe-the-image chat requests with base64 data-URL images, from a local Flickr8k folder (--dataset-path)."""

    def build_messages(self) -> Iterator[list[dict]]:
        captions = self._captions_file()
        folder = os.path.dirname(captions)
        if not self.prompt_fits(PROMPT):
            return
        for name in self._image_names(captions):
            path = self._find_image(folder, name, captions)
            with open(path, "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            mime = MIME.get(os.path.splitext(name)[1].lower(), "image/jpeg")
            yield [self.create_message(PROMPT, [f"data:{mime};base64,{data}"])]

    def _captions_file(self) -> str:
        path = self.query_parameters.dataset_path
        if path and os.path.isfile(path):
            return path
        folder = self.dataset_folder(path, WHAT)
        for name in CAPTION_FILES:
            file = os.path.join(folder, name)
            if os.path.isfile(file):
                return file
        raise DatasetError(f"dataset folder '{folder}' has no captions.txt: --dataset-path must name {WHAT}")

    def _image_names(self, captions: str) -> Iterator[str]:
        seen = set()
        try:
            with open(captions, encoding="utf-8", newline="") as f:
                reader = csv.reader(f)
                header = [h.strip().lower() for h in next(reader, [])]
                if "image" not in header:
                    raise self.dataset_format_error(captions, "line 1", 'is not the header "image,caption"', WHAT)
                column = header.index("image")
                for row in reader:
                    name = row[column].strip() if len(row) > column else ""
                    if name and name not in seen:
                        seen.add(name)
                        yield name
        except UnicodeDecodeError:
            raise DatasetError(f"dataset file '{captions}' is not UTF-8 text: expected {WHAT}") from None
        except csv.Error as e:
            raise self.dataset_format_error(captions, "content", f"is not CSV ({e})", WHAT) from None

    @staticmethod
    def _find_image(folder: str, name: str, captions: str) -> str:
        for sub in IMAGE_DIRS:
            path = os.path.join(folder, sub, name)
            if os.path.isfile(path):
                return path
        raise DatasetError(f"image '{name}' named in '{captions}' not found in {os.path.join(folder, 'Images')} "
                           f"or {folder}: expected {WHAT}")
