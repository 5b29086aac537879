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
// [Keyring.AppendClickTokenFor], so a redirect signs its click token with one
// HMAC in all.
//
// A click token is the raw (unpadded) base64url encoding of
//
//	1 byte   version (1)
//	12 bytes the code's 95-bit value, big-endian
//	8 bytes  click id, big-endian
//	8 bytes  click time as Unix nanoseconds, big-endian (0 for a zero time)
//	1 byte   node name length (at most 64)
//	n bytes  node name
//	16 bytes HMAC-SHA256(campaign key of the code's generation, all of the
//	         above), truncated to 128 bits
//
// Everything in this package is safe for concurrent use.
package links
