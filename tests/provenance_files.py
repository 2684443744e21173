"""Files that claim an origin, made here: a PNG with a Stable Diffusion `parameters` chunk, a
ComfyUI PNG, a JPEG whose EXIF names a generator, a JPEG with XMP, and JPEGs signed with a C2PA
manifest under a certificate chain made in the test (a CA and its signer)."""

from __future__ import annotations

import datetime
import io
import json

import numpy as np
from PIL import Image, PngImagePlugin

AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAMERA_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
SD_PARAMETERS = (
    "portrait photo of a woman, 85mm\nNegative prompt: blurry\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x512, "
    "Model: sd_xl_base_1.0"
)


def picture(seed: int = 0, size: int = 64) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_with_text(**chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    return encoded(picture(), "PNG", pnginfo=info)


def sd_png() -> bytes:
    return png_with_text(parameters=SD_PARAMETERS)


def comfyui_png() -> bytes:
    graph = {"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20}}}
    return png_with_text(prompt=json.dumps(graph), workflow=json.dumps({"nodes": []}))


def jpeg_with_software(software: str) -> bytes:
    exif = Image.Exif()
    exif[0x0131] = software
    return encoded(picture(), "JPEG", exif=exif, quality=90)


def jpeg_with_xmp(creator_tool: str, source_type: str) -> bytes:
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmp:CreatorTool="{creator_tool}" Iptc4xmpExt:DigitalSourceType="{source_type}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()
    return encoded(picture(), "JPEG", xmp=xmp, quality=90)


def stripped(data: bytes) -> bytes:
    """The same pixels saved again with no metadata: what a messenger does to a file."""
    with Image.open(io.BytesIO(data)) as image:
        return encoded(image.convert("RGB"), "JPEG", quality=90)


def certificate_chain() -> tuple[bytes, bytes]:
    """(PEM chain: signer then CA, PEM private key of the signer), made now, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deepfake-detect tests"),
        ])  # fmt: skip

    def usage(**flags: bool) -> x509.KeyUsage:
        names = ("digital_signature", "content_commitment", "key_encipherment",
                 "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                 "encipher_only", "decipher_only")  # fmt: skip
        return x509.KeyUsage(**{n: flags.get(n, False) for n in names})

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject, public_key, signing_key, issuer, extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )  # fmt: skip
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signing_key, hashes.SHA256())

    ca = certificate(name("test CA"), ca_key.public_key(), ca_key, name("test CA"), [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (usage(digital_signature=True, key_cert_sign=True, crl_sign=True), True),
        (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
    ])  # fmt: skip
    signer = certificate(name("test signer"), key.public_key(), ca_key, ca.subject, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    ])  # fmt: skip
    pem = serialization.Encoding.PEM
    chain = signer.public_bytes(pem) + ca.public_bytes(pem)
    private = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, private


def c2pa_signed_jpeg(source_type: str = AI_SOURCE, generator: str = "TestGen Diffusion") -> bytes:
    """A JPEG with a C2PA manifest: created by `generator`, with that digital source type."""
    import c2pa

    chain, key = certificate_chain()
    manifest = {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "made.jpg",
        "format": "image/jpeg",
        "assertions": [{
            "label": "c2pa.actions",
            "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": source_type}]},
        }],
    }  # fmt: skip
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    signed = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(encoded(picture(), "JPEG")), signed)
    return signed.getvalue()


def tampered(data: bytes) -> bytes:
    """One byte of the image data changed after signing: the manifest's hash no longer holds."""
    changed = bytearray(data)
    changed[-200] ^= 0xFF
    return bytes(changed)
