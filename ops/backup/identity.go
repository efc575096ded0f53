package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/storeedge/storeedge/internal/config"
	"github.com/storeedge/storeedge/storage"
)

// Fingerprint is what a database records of the store key: enough to tell two keys apart,
// nothing that gives the key back. "" for no key.
func Fingerprint(storeKey string) string {
	if storeKey == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("storeedge store key\x00" + storeKey))
	return hex.EncodeToString(sum[:16])
}

// IdentityOf is the identity of the server that cfg configures.
func IdentityOf(cfg config.Config) storage.Identity {
	return storage.Identity{
		ServerID: cfg.ServerID,
		ShopID:   cfg.Shop.ID,
		ShopName: cfg.Shop.Name,
		StoreKey: Fingerprint(cfg.Cloud.StoreKey.Reveal()),
	}
}

// OtherShopError is a backup of another shop than the one this server is configured for.
type OtherShopError struct {
	Backup, Here storage.Identity
	Reason       string
}

func (e *OtherShopError) Error() string {
	return fmt.Sprintf("backup: this backup is of another shop (%s): restoring it would give this server another shop's devices, orders and catalog. If that is what you want (the vendor issued a new store key, say), add --force", e.Reason)
}

// CheckShop returns an *OtherShopError when the backup's identity and this server's say they
// are different shops: by shop id when both have one, else by store key. When neither tells,
// it returns nil: a backup of a server that never ran, or from before identities were recorded.
func CheckShop(backup, here storage.Identity) error {
	switch {
	case backup.ShopID != "" && here.ShopID != "":
		if backup.ShopID != here.ShopID {
			return &OtherShopError{Backup: backup, Here: here, Reason: fmt.Sprintf("the backup is of shop %q%s, this server is configured for shop %q (shop.id)", backup.ShopID, named(backup.ShopName), here.ShopID)}
		}
	case backup.StoreKey != "" && here.StoreKey != "":
		if backup.StoreKey != here.StoreKey {
			return &OtherShopError{Backup: backup, Here: here, Reason: fmt.Sprintf("the backup%s was made with another store key than this server's cloud.store_key", named(backup.ShopName))}
		}
	}
	return nil
}

func named(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", name)
}
