// Package pkgdoc holds only a test: every package of the module has a package
// doc comment and every exported name a doc comment.
package pkgdoc
