"""Colour and pattern words against labels made by eye: the first 6 flat lays of each class (48 photos, the set the
naming was tuned on) and the next 6 (48 more, only checked against).

    .venv/bin/python benchmarks/colour_naming.py ../shared/data/flatlay [--masks /tmp/colour/masks]

Each photo is cut out with the fused cut-out (or its mask is read from --masks/<class>/<stem>.png when there, and
written there when not), its garment type is predicted by the trained category model (dull blue trousers and
shorts are named denim), then it is named by `pipeline.colours.listing_colours`. A main colour counts as right when its
name is one a buyer would accept for that garment, as judged by eye (the photo enlarged, the garment's pixels
compared with a neutral wall or floor in the same shot where the light was coloured); a pattern when its word is
one of those accepted. Prints JSON: the totals, and each photo with what the studio said.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.category_model import predict_category  # noqa: E402
from pipeline.colours import listing_colours  # noqa: E402
from pipeline.segmentation import get_segmenter  # noqa: E402

# (photo, colour names a buyer accepts as the main colour (the first is the best), pattern words accepted)
LABELS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("dress/07cddef1-1fc8-47e4-a28a-613e60912590.jpg", ('blush pink', 'pink', 'peach'), ('solid',)),
    ("dress/19e4de0d-fb90-47c2-83b4-37e3652c5a16.jpg", ('purple', 'plum', 'hot pink'), ('solid',)),
    ("dress/22ee2330-a2e7-4abf-aec1-0699e819a248.jpg", ('white', 'navy', 'black', 'lilac'), ('print', 'floral')),
    ("dress/24890459-3da7-4976-a837-f289e7af0d48.jpg", ('grey', 'heather grey', 'light grey'), ('print', 'graphic')),
    ("dress/35f5fecb-755a-45d6-ac3d-3feb8299dc87.jpg", ('red', 'pink'), ('checked',)),
    ("dress/3eeaf330-2460-4d7f-844f-d7254d12e587.jpg", ('blue', 'royal blue', 'denim blue'), ('print',)),
    ("longsleeve/0354015d-9ed3-4175-9f85-dd5725dce0e1.jpg", ('navy', 'black'), ('striped',)),
    ("longsleeve/060062e8-b564-4aaa-8d9e-18e735915e37.jpg", ('black', 'navy'), ('print', 'graphic', 'striped')),
    ("longsleeve/0c6472ac-e3f8-443b-a884-2e60562c35b1.jpg", ('blue', 'denim blue', 'navy', 'grey'), ('solid',)),
    ("longsleeve/0deb9798-5e87-413f-93aa-e19017648a4b.jpg", ('navy', 'purple'), ('print',)),
    ("longsleeve/11331826-e5c9-461d-acd2-b078022a9146.jpg", ('heather grey', 'grey', 'light grey'), ('print', 'graphic')),
    ("longsleeve/20e44d00-fc8c-46d9-9349-c931850ec57a.jpg", ('black',), ('solid',)),
    ("outwear/0ad8629f-2e9f-4591-a661-7489d6d49737.jpg", ('grey', 'blue', 'dark grey'), ('solid',)),
    ("outwear/0c7412e7-81eb-40b7-be64-ce9782103529.jpg", ('black',), ('solid',)),
    ("outwear/161e35df-93d4-4b30-817e-de03c8c1d55a.jpg", ('red', 'burgundy'), ('solid',)),
    ("outwear/2160a577-406a-4812-ada2-2a3cb30c2ba8.jpg", ('olive', 'army green', 'khaki'), ('solid',)),
    ("outwear/2c1c3c2a-5b22-4133-9509-1877d6a106a0.jpg", ('red',), ('solid',)),
    ("outwear/2ea87992-6eb5-46a2-9ac6-e4ac727179aa.jpg", ('charcoal', 'dark grey'), ('solid',)),
    ("pants/012d1ca9-baaf-4b01-8b60-955f3408b1b7.jpg", ('beige', 'cream', 'khaki'), ('solid',)),
    ("pants/0257eb81-f3d3-4704-8299-8b6ab20f1ed4.jpg", ('khaki', 'tan', 'beige'), ('solid',)),
    ("pants/081b5ec1-13a6-43c8-991f-9ad2020f646a.jpg", ('denim blue', 'light blue', 'blue'), ('solid', 'floral')),
    ("pants/0d0bb91d-01d7-45df-827d-da96bbc44b15.jpg", ('denim blue', 'blue'), ('solid',)),
    ("pants/17bebe65-17cc-42b3-885f-4e6c64a16f26.jpg", ('denim blue', 'blue'), ('solid',)),
    ("pants/19ff0603-c52b-4d27-a9b9-cfd9da5e9f35.jpg", ('denim blue', 'navy', 'blue'), ('solid',)),
    ("shirt/00143901-a14c-4600-960f-7747b4a3a8cd.jpg", ('grey', 'navy', 'blue'), ('print',)),
    ("shirt/0e7453e0-023c-4c34-b837-e6349846b112.jpg", ('white', 'cream', 'ivory'), ('checked',)),
    ("shirt/118fb0e8-2783-4086-b81a-d2a332fbb4f2.jpg", ('blue', 'light blue'), ('striped', 'solid')),
    ("shirt/1d2e0956-07d7-41d8-9286-ea98d1d32dbd.jpg", ('navy', 'blue'), ('floral', 'print')),
    ("shirt/235230d6-8a23-4981-bc43-5e62c0570f44.jpg", ('blue', 'navy', 'light blue'), ('checked', 'striped')),
    ("shirt/29f8cf36-3ae6-4558-9f42-82f330c15b3d.jpg", ('white', 'light grey'), ('striped', 'solid')),
    ("shorts/0c4d3d88-9756-4211-83ad-2d6c68ea0043.jpg", ('red', 'coral', 'hot pink'), ('solid',)),
    ("shorts/0e88c86f-911f-4dd6-85b6-cb953e9dd2c5.jpg", ('denim blue', 'blue', 'light blue'), ('solid',)),
    ("shorts/0fc5edba-525c-4234-935f-af55b39530dc.jpg", ('red',), ('solid',)),
    ("shorts/163d946e-7638-4069-92e0-1b02be330271.jpg", ('beige', 'khaki', 'taupe'), ('solid',)),
    ("shorts/17e1cea3-4010-4f4f-b7a4-77d96594e219.jpg", ('denim blue', 'blue'), ('solid',)),
    ("shorts/1dbe9268-758f-4cd4-8f42-58b40ef4bb74.jpg", ('sage', 'army green', 'green'), ('print',)),
    ("skirt/2459a9ab-b654-4aef-be7c-89340da78cec.jpg", ('black',), ('floral', 'print')),
    ("skirt/2ac96388-4353-44b6-a174-de2f2523afd1.jpg", ('navy',), ('checked',)),
    ("skirt/36d30ee9-1a06-49a5-94ca-1e58f13e7dc2.jpg", ('navy', 'blue', 'black'), ('checked',)),
    ("skirt/3878a7f2-61f1-4594-91f1-7e05e6227272.jpg", ('black',), ('solid',)),
    ("skirt/4c2b720f-6916-4edf-a732-847c55eec881.jpg", ('sage', 'green', 'olive'), ('floral', 'print')),
    ("skirt/4d5d201a-11cb-4e5c-b291-9b8c833c4ddf.jpg", ('red',), ('solid',)),
    ("t-shirt/0090ca2c-e8c8-43f6-b764-e48e0e954006.jpg", ('yellow',), ('solid',)),
    ("t-shirt/06de9ebd-be39-4cc6-aea7-1d047ccf1a52.jpg", ('white',), ('solid',)),
    ("t-shirt/07b294ee-9a04-4795-9af2-7a1c801e8db0.jpg", ('white',), ('print', 'graphic')),
    ("t-shirt/099de1d5-7422-4230-b11b-fe581139b82c.jpg", ('white', 'ivory', 'cream'), ('graphic',)),
    ("t-shirt/09cd8fdf-bbe9-4908-8f54-f399bc635c9b.jpg", ('white',), ('graphic',)),
    ("t-shirt/0acef3a8-51f3-42ce-8842-10e4898c0a0f.jpg", ('white',), ('graphic', 'solid')),
]
HELD_OUT: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("dress/4114a9c0-eea0-442c-af14-8df6c586a016.jpg", ('red', 'navy'), ('striped',)),
    ("dress/465ff2a7-d489-45c6-a97e-561ba597da54.jpg", ('navy',), ('print',)),
    ("dress/46e4c390-2154-4f6f-8c6f-e7805564d929.jpg", ('blue', 'navy', 'royal blue'), ('print', 'floral')),
    ("dress/4719349a-06d4-4ddf-8428-69c6cef55e46.jpg", ('lavender', 'lilac', 'white'), ('graphic', 'print')),
    ("dress/475d03c5-3317-4877-b13d-e2142b33bb70.jpg", ('navy', 'black'), ('floral', 'print')),
    ("dress/5ab0c815-c152-4726-b540-42876b23c34a.jpg", ('red', 'burgundy'), ('floral', 'print')),
    ("longsleeve/20e5a129-ac26-4ec2-9bf1-f63427503929.jpg", ('light grey', 'grey', 'black'), ('striped',)),
    ("longsleeve/2b12ad64-97e5-4500-ad2e-f74ea31eacbb.jpg", ('navy', 'blue'), ('solid',)),
    ("longsleeve/2b45bc2e-32e9-45db-b34b-aad93113745d.jpg", ('red',), ('graphic',)),
    ("longsleeve/36bde3bf-3a55-4a16-baf9-d34f4f5ae19a.jpg", ('navy',), ('solid',)),
    ("longsleeve/3723b671-6846-4d22-af73-fc655eb52093.jpg", ('black',), ('solid',)),
    ("longsleeve/4014f464-8bd5-4425-b934-735630cce566.jpg", ('black',), ('solid',)),
    ("outwear/3108045a-9975-4ad8-b5ed-e0a065e5d397.jpg", ('navy', 'blue'), ('solid',)),
    ("outwear/311ee106-2f12-4b1d-83fb-b3e597607cca.jpg", ('coral', 'red'), ('solid',)),
    ("outwear/349cf35c-eaad-49af-b0c9-3c88b8d0afc1.jpg", ('ivory', 'white', 'cream'), ('solid', 'striped')),
    ("outwear/42518e91-c969-49f5-ac68-dfe394d7451e.jpg", ('olive', 'army green', 'khaki'), ('solid',)),
    ("outwear/446df066-edee-4c69-90d7-5013bcc72cf2.jpg", ('navy',), ('solid',)),
    ("outwear/5d365198-b2e9-404a-b160-58248c136ef3.jpg", ('grey', 'heather grey', 'dark grey'), ('solid',)),
    ("pants/1f3fe0f5-4724-43f8-bfce-6e22d1f1f5ba.jpg", ('dark grey', 'charcoal', 'grey'), ('solid',)),
    ("pants/24eb8ba7-065a-4493-8fa6-b3afa89751f6.jpg", ('green',), ('solid',)),
    ("pants/2d88dcfb-2418-49fa-82b2-b5d4500ed542.jpg", ('dark grey', 'charcoal', 'grey'), ('solid',)),
    ("pants/2f03be8f-7053-4b94-b619-d5166b34ef3f.jpg", ('blush pink', 'pink', 'mauve'), ('solid',)),
    ("pants/38dbb71c-2e31-4f17-af08-90719ad818d0.jpg", ('navy',), ('solid',)),
    ("pants/38e03d31-8068-4d73-82ac-c66334f907a5.jpg", ('denim blue', 'blue'), ('solid',)),
    ("shirt/309ead9a-2672-40b7-8a09-ab5fc6abccc0.jpg", ('denim blue', 'blue', 'navy'), ('solid',)),
    ("shirt/31315e30-2742-4f7f-8168-10a0645d2163.jpg", ('navy',), ('print',)),
    ("shirt/328e21ed-2843-4469-a49d-4c01470dc98d.jpg", ('blush pink', 'pink', 'lilac'), ('solid',)),
    ("shirt/4db14d3d-05ca-48b1-9257-204b447c27bb.jpg", ('light blue', 'blue'), ('solid',)),
    ("shirt/5d97eab8-e62b-49cf-b73e-7cec4951d9c2.jpg", ('hot pink', 'pink', 'red'), ('checked',)),
    ("shirt/6104b71c-017f-4631-95c9-6ff414091a7d.jpg", ('army green', 'olive', 'dark grey'), ('solid',)),
    ("shorts/273d37f5-1f5f-4ab2-bfbf-1e5a4648500c.jpg", ('black', 'navy'), ('print',)),
    ("shorts/27f3c569-0b20-4791-a39e-54a3c6e16da1.jpg", ('white',), ('striped',)),
    ("shorts/2e11ac6b-d3ac-4368-b499-9beea54388a4.jpg", ('white',), ('solid',)),
    ("shorts/3e203f7a-5b90-4b27-9303-a5634a80f015.jpg", ('navy', 'blue'), ('floral', 'print')),
    ("shorts/456578a1-8a2e-4906-85a4-c93ceef8c108.jpg", ('burgundy', 'red'), ('solid',)),
    ("shorts/6505e289-1236-4675-8430-ebcc52fe4ca6.jpg", ('black', 'charcoal', 'navy'), ('solid',)),
    ("skirt/7f160564-1b10-4cf0-bb61-5d9af037e898.jpg", ('mint', 'turquoise', 'white'), ('floral', 'print')),
    ("skirt/92e0e80a-d72a-4bed-9ee3-84343618f0bf.jpg", ('black',), ('print', 'solid', 'floral')),
    ("skirt/ad82f227-e35f-4268-a6e3-ef417bf96656.jpg", ('white',), ('print',)),
    ("skirt/adefd137-8fd0-415b-8139-f406e5f46182.jpg", ('black',), ('floral', 'print')),
    ("skirt/bb361f03-abc9-4a8e-a2a4-ff306a5b4612.jpg", ('navy',), ('print',)),
    ("skirt/ecdc68a9-12c7-449b-ab3a-4b2a8e71b197.jpg", ('navy', 'denim blue'), ('solid',)),
    ("t-shirt/0e240297-2265-411e-b386-cb59a44f98ae.jpg", ('black',), ('solid',)),
    ("t-shirt/12a48c81-d35b-45f8-93fd-5d69153163e2.jpg", ('white',), ('graphic',)),
    ("t-shirt/12fdd808-d883-4428-9df0-c16e91cca103.jpg", ('navy', 'black'), ('solid',)),
    ("t-shirt/138183f7-178c-4d31-9069-60226d43fab4.jpg", ('navy', 'grey'), ('striped',)),
    ("t-shirt/164900f8-4d29-454b-97ba-5d7d22f5cfe2.jpg", ('white',), ('graphic',)),
    ("t-shirt/16f1fbdf-d339-40f6-aecb-e55199db7a96.jpg", ('blush pink', 'pink'), ('floral', 'print')),
]


def garment_mask(photo: Path, image: Image.Image, masks: Path | None, segmenter) -> np.ndarray:
    cached = masks / photo.parent.name / f"{photo.stem}.png" if masks else None
    if cached and cached.is_file():
        return np.asarray(Image.open(cached))
    mask = segmenter.segment(image).mask
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(cached)
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flatlay", type=Path, help="the flatlay folder (class folders inside)")
    parser.add_argument("--masks", type=Path, help="a folder to cache the cut-outs in between runs")
    args = parser.parse_args()
    segmenter = get_segmenter("fused")
    report = {}
    for set_name, labels in (("tuned_on", LABELS), ("held_out", HELD_OUT)):
        photos, seconds = [], []
        for name, colours_accepted, patterns_accepted in labels:
            path = args.flatlay / name
            image = Image.open(path).convert("RGB")
            mask = garment_mask(path, image, args.masks, segmenter)
            started = time.perf_counter()
            garment_type = predict_category(image, mask, "trained").garment_type
            words = listing_colours(image, mask, garment_type)
            seconds.append(time.perf_counter() - started)
            photos.append({
                "photo": name, "color": words.color.name, "hex": words.color.hex,
                "secondary_color": words.secondary.name if words.secondary else None, "pattern": words.pattern,
                "color_right": words.color.name in colours_accepted,
                "pattern_right": words.pattern in patterns_accepted,
                "label": colours_accepted[0], "pattern_label": patterns_accepted[0],
            })
        report[set_name] = {
            "photos": len(photos),
            "color_right": sum(p["color_right"] for p in photos),
            "pattern_right": sum(p["pattern_right"] for p in photos),
            "median_seconds_with_category": round(float(np.median(seconds)), 3),
            "wrong": [p for p in photos if not (p["color_right"] and p["pattern_right"])],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
