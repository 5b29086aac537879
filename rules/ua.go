package rules

import "bytes"

// Operating systems reported by ClassifyUA.
const (
	OSiOS     = "ios"
	OSAndroid = "android"
	OSWindows = "windows"
	OSMacOS   = "macos"
	OSLinux   = "linux"
	OSOther   = "other"
)

// Device classes reported by ClassifyUA.
const (
	DeviceMobile  = "mobile"
	DeviceTablet  = "tablet"
	DeviceDesktop = "desktop"
)

type osID uint8

const (
	osIOS osID = iota
	osAndroid
	osWindows
	osMacOS
	osLinux
	osOther
	numOS
)

var osNames = [numOS]string{OSiOS, OSAndroid, OSWindows, OSMacOS, OSLinux, OSOther}

type deviceID uint8

const (
	devMobile deviceID = iota
	devTablet
	devDesktop
	numDevices
)

var deviceNames = [numDevices]string{DeviceMobile, DeviceTablet, DeviceDesktop}

// maxUAScan bounds how much of a User-Agent is inspected.
const maxUAScan = 1024

// ClassifyUA guesses the operating system and device class of a User-Agent
// header. It is a small, order-sensitive token match (no regular expressions),
// does not allocate, and never fails: unknown agents are ("other", "desktop").
// iPadOS 13+ Safari announces itself as a Mac and is reported as macos/desktop.
func ClassifyUA(ua []byte) (os, device string) {
	o, d := classifyUA(ua)
	return osNames[o], deviceNames[d]
}

func classifyUA(ua []byte) (osID, deviceID) {
	if len(ua) > maxUAScan {
		ua = ua[:maxUAScan]
	}
	has := func(s string) bool { return containsStr(ua, s) }
	switch {
	case has("Windows Phone"):
		return osWindows, devMobile
	case has("iPad"):
		return osIOS, devTablet
	case has("iPhone") || has("iPod"):
		return osIOS, devMobile
	case has("Android"):
		if has("Mobile") && !has("Tablet") {
			return osAndroid, devMobile
		}
		return osAndroid, devTablet
	case has("OpenHarmony") || has("HarmonyOS") || has("KAIOS") || has("KaiOS"):
		if has("Tablet") {
			return osOther, devTablet
		}
		return osOther, devMobile
	case has("Windows"):
		return osWindows, devDesktop
	case has("Macintosh") || has("Mac OS X"):
		return osMacOS, devDesktop
	case has("CrOS") || has("Linux") || has("X11"):
		return osLinux, devDesktop
	case has("Tablet"):
		return osOther, devTablet
	case has("Mobile") || has("Phone"):
		return osOther, devMobile
	}
	return osOther, devDesktop
}

// containsStr reports whether s occurs in b, without allocating.
func containsStr(b []byte, s string) bool {
	if len(s) == 0 {
		return true
	}
	for len(b) >= len(s) {
		i := bytes.IndexByte(b[:len(b)-len(s)+1], s[0])
		if i < 0 {
			return false
		}
		if string(b[i:i+len(s)]) == s {
			return true
		}
		b = b[i+1:]
	}
	return false
}
