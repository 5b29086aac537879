// Package links issues and verifies self-verifying share codes and signed
// click tokens, and renders share links as QR codes.
//
// A share code is exactly 16 base62 characters (alphabet 0-9A-Za-z,
// big-endian, left-padded with '0') encoding a 95-bit value laid out, from the
// most significant bit:
//
//	2 bits  key generation mod 4
//	3 bits  variant (0-7)
//	16 bits campaign number
//	32 bits inviter number
//	42 bits tag: the top 42 bits of HMAC-SHA256(campaign key, the 53 bits
//	        above as 7 big-endian bytes, right-aligned)
//
// Campaign keys are derived, never stored: key(campaign, gen) =
// HMAC-SHA256(master[gen], "refrouter/v1/campaign/" + decimal(campaign)).
// A [Keyring] holds the cluster's master keys, derives campaign keys lazily
// and caches them, so [Keyring.Verify] runs without any lookup beyond the
// code itself and without allocating. It also caches recently verified
// genuine codes in a fixed-size table, so a repeated code is verified without
// an HMAC, and [Keyring.VerifyCode] hands the verified tag to
// [Keyring.AppendClickTokenFor], so a redirect signs its click token with
// the token's own MAC alone.
//
// A click token is the raw (unpadded) base64url encoding of
//
//	1 byte   version (1 or 2)
//	12 bytes the code's 95-bit value, big-endian
//	8 bytes  click id, big-endian
//	8 bytes  click time as Unix nanoseconds, big-endian (0 for a zero time)
//	1 byte   node name length (at most 64)
//	n bytes  node name
//	16 bytes tag of all of the above, by version:
//	         1: HMAC-SHA256(campaign key of the code's generation),
//	            truncated to 128 bits
//	         2: AES-128-CMAC (RFC 4493) under the click key of the code's
//	            generation
//
// where click key(campaign, gen) = the first 16 bytes of
// HMAC-SHA256(master[gen], "refrouter/v2/click/campaign/" + decimal(campaign)):
// a key of its own, so no key serves two algorithms or two purposes. The
// version byte is under the tag, so a token cannot be passed off as the
// other version. The embedded code's own 42-bit tag is checked too, in both
// versions.
//
// Version 2 exists for the redirect's CPU: signing the token is most of the
// redirect's own work, and an HMAC-SHA256 costs two SHA-256 compressions
// plus crypto/hmac's Reset and Sum, where the CMAC of a 35-100 byte token
// body is 3-7 AES-NI block encryptions under a key schedule and subkeys
// computed once per campaign (about a third of the time; see
// BenchmarkClickTokenMAC). AES-CMAC with its full 128-bit tag is a
// standard MAC (NIST SP 800-38B); its forgery bound grows with the square of
// the blocks tagged under one key, which stays negligible here: there is
// one key per campaign and generation, and it takes about 2^32 blocks (a
// billion tokens) under one key for that bound to reach 2^-64.
//
// A Keyring verifies both versions, always, and signs the one chosen with
// [WithClickTokenVersion]: [ClickTokenV2] by default, [ClickTokenV1] while a
// cluster is upgraded from a build that verifies only version 1 (a node
// must not sign tokens its peers cannot verify).
//
// Everything in this package is safe for concurrent use.
package links
