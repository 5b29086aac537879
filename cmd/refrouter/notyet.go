package main

import "errors"

var errNotYet = errors.New("bench cluster: not available in this build")
