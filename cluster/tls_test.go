package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// selfSignedTLS returns an mTLS config (server and client) trusting one
// self-signed certificate for 127.0.0.1.
func selfSignedTLS(tb testing.TB) *tls.Config {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cluster-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

func TestMutualTLS(t *testing.T) {
	conf := selfSignedTLS(t)
	nodes := newTestCluster(t, 2, 0, func(c *Config) { c.TLS = conf })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range nodes {
		if _, err := n.c.Apply(ctx, []byte("tls-"+n.cfg.Name)); err != nil {
			t.Fatalf("apply via %s: %v", n.cfg.Name, err)
		}
	}
	if _, err := FetchStatus(ctx, nodes[0].cfg.ClusterAddr, testClusterKey, conf); err != nil {
		t.Fatalf("status over TLS: %v", err)
	}
	if _, err := FetchStatus(ctx, nodes[0].cfg.ClusterAddr, testClusterKey, nil); err == nil {
		t.Fatal("plain TCP accepted on a TLS cluster port")
	}
	noCert := conf.Clone()
	noCert.Certificates = nil
	if _, err := FetchStatus(ctx, nodes[0].cfg.ClusterAddr, testClusterKey, noCert); err == nil {
		t.Fatal("client without certificate accepted")
	}
}
