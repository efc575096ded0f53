package cloudsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/storeedge/storeedge/internal/jsonenc"
)

// The catalog is never stored: every document is a pure function of (seed, item index, item
// version), so a million products cost a few bytes of state each instead of a few hundred bytes
// of JSON. Only integer arithmetic is used so that a seed gives the same catalog on every
// platform.

// department is a top-level category with the words its products are named from.
type department struct {
	name     string
	code     string // SKU prefix
	food     bool
	taxRate  int64 // basis points
	minCents int64
	maxCents int64
	variants []string // flavours for food, colours or variants for goods
	lower    []string // variants in lower case, for descriptions; built by init
	sizes    []string
	subs     []string // "Subcategory:Noun"
}

// departments holds 20 departments of 10 subcategories each: 200 categories.
var departments = []department{
	{name: "Beverages", code: "BEV", food: true, taxRate: 550, minCents: 59, maxCents: 2999,
		variants: []string{"Lemon", "Orange", "Apple", "Cherry", "Mango", "Peach", "Berry", "Ginger", "Mint", "Original"},
		sizes:    []string{"33 cl", "50 cl", "75 cl", "1 l", "1.5 l", "6 x 33 cl"},
		subs: []string{"Soft drinks:Soda", "Juices:Juice", "Water:Mineral Water", "Coffee:Coffee Beans", "Tea:Tea",
			"Beer:Lager", "Wine:Wine", "Spirits:Gin", "Energy drinks:Energy Drink", "Syrups:Syrup"}},
	{name: "Dairy", code: "DAI", food: true, taxRate: 550, minCents: 49, maxCents: 1499,
		variants: []string{"Plain", "Vanilla", "Strawberry", "Honey", "Coconut", "Lactose-free", "Whole", "Semi-skimmed", "Goat", "Herb"},
		sizes:    []string{"125 g", "200 g", "250 g", "500 g", "1 l", "4 x 125 g"},
		subs: []string{"Milk:Milk", "Yogurt:Yogurt", "Cheese:Cheese", "Butter:Butter", "Cream:Cream", "Desserts:Dessert Cup",
			"Eggs:Eggs", "Plant-based:Oat Drink", "Kefir:Kefir", "Fresh cheese:Cream Cheese"}},
	{name: "Bakery", code: "BAK", food: true, taxRate: 550, minCents: 39, maxCents: 999,
		variants: []string{"Wholegrain", "Sourdough", "Butter", "Seeded", "Rye", "Chocolate", "Almond", "Multigrain", "Spelt", "Classic"},
		sizes:    []string{"250 g", "400 g", "500 g", "6 pcs", "8 pcs", "12 pcs"},
		subs: []string{"Bread:Loaf", "Baguettes:Baguette", "Croissants:Croissants", "Cakes:Cake", "Biscuits:Biscuits",
			"Crackers:Crackers", "Brioche:Brioche", "Wraps:Wraps", "Pastries:Pastries", "Rusks:Rusks"}},
	{name: "Fruit & vegetables", code: "FRV", food: true, taxRate: 550, minCents: 49, maxCents: 699,
		variants: []string{"Red", "Green", "Yellow", "Baby", "Heirloom", "Sweet", "Seedless", "Mixed", "Sicilian", "Local"},
		sizes:    []string{"250 g", "500 g", "1 kg", "2 kg", "per piece", "bunch"},
		subs: []string{"Fresh fruit:Apples", "Fresh vegetables:Carrots", "Salads:Salad", "Herbs:Basil", "Nuts:Walnuts",
			"Dried fruit:Apricots", "Potatoes:Potatoes", "Mushrooms:Mushrooms", "Exotic fruit:Mango", "Prepared vegetables:Vegetable Mix"}},
	{name: "Meat & fish", code: "MEA", food: true, taxRate: 550, minCents: 199, maxCents: 4999,
		variants: []string{"Free-range", "Smoked", "Marinated", "Herb", "Peppered", "Lean", "Wild", "Garlic", "Lemon", "Classic"},
		sizes:    []string{"150 g", "200 g", "300 g", "500 g", "1 kg", "4 pcs"},
		subs: []string{"Beef:Steak", "Poultry:Chicken Breast", "Pork:Pork Chops", "Sausages:Sausages", "Ham:Ham",
			"Fresh fish:Salmon Fillet", "Smoked fish:Smoked Trout", "Seafood:Prawns", "Burgers:Burgers", "Deli meats:Salami"}},
	{name: "Frozen", code: "FRZ", food: true, taxRate: 550, minCents: 99, maxCents: 1499,
		variants: []string{"Margherita", "Vanilla", "Chocolate", "Garden", "Spicy", "Cheese", "Crispy", "Family", "Mediterranean", "Classic"},
		sizes:    []string{"300 g", "450 g", "600 g", "750 g", "1 kg", "2.5 kg"},
		subs: []string{"Pizza:Pizza", "Ice cream:Ice Cream", "Frozen vegetables:Peas", "Ready meals:Lasagne", "Fries:Fries",
			"Fish fingers:Fish Fingers", "Frozen desserts:Tart", "Frozen bread:Rolls", "Frozen seafood:Mussels", "Frozen snacks:Spring Rolls"}},
	{name: "Pantry", code: "PAN", food: true, taxRate: 550, minCents: 49, maxCents: 1999,
		variants: []string{"Italian", "Basmati", "Wholewheat", "Extra Virgin", "Balsamic", "Tomato", "Pesto", "Curry", "Paprika", "Classic"},
		sizes:    []string{"250 g", "400 g", "500 g", "1 kg", "500 ml", "1 l"},
		subs: []string{"Pasta:Spaghetti", "Rice:Rice", "Flour:Flour", "Sugar:Sugar", "Oil:Olive Oil", "Vinegar:Vinegar",
			"Sauces:Pasta Sauce", "Spices:Spice Blend", "Canned vegetables:Sweetcorn", "Soups:Soup"}},
	{name: "Breakfast", code: "BRE", food: true, taxRate: 550, minCents: 99, maxCents: 899,
		variants: []string{"Honey", "Chocolate", "Fruit", "Nut", "Oat", "Strawberry", "Apricot", "Cinnamon", "Coconut", "Classic"},
		sizes:    []string{"250 g", "375 g", "500 g", "750 g", "1 kg", "6 pcs"},
		subs: []string{"Cereal:Cereal", "Muesli:Muesli", "Jam:Jam", "Honey:Honey", "Spreads:Spread", "Porridge:Porridge Oats",
			"Cereal bars:Cereal Bars", "Pancakes:Pancake Mix", "Hot chocolate:Cocoa Powder", "Granola:Granola"}},
	{name: "Snacks & sweets", code: "SNK", food: true, taxRate: 550, minCents: 49, maxCents: 799,
		variants: []string{"Salted", "Paprika", "Sour Cream", "Dark", "Milk", "Caramel", "Mint", "Sea Salt", "Cheese", "Honey"},
		sizes:    []string{"40 g", "100 g", "150 g", "200 g", "300 g", "6 x 25 g"},
		subs: []string{"Crisps:Crisps", "Chocolate:Chocolate Bar", "Candy:Gummies", "Chewing gum:Chewing Gum", "Popcorn:Popcorn",
			"Pretzels:Pretzels", "Cookies:Cookies", "Nut mixes:Nut Mix", "Rice cakes:Rice Cakes", "Licorice:Licorice"}},
	{name: "Baby", code: "BAB", food: true, taxRate: 550, minCents: 149, maxCents: 3999,
		variants: []string{"Sensitive", "Fragrance-free", "Size 1", "Size 3", "Size 5", "Apple", "Carrot", "Pear", "Banana", "Night"},
		sizes:    []string{"4 pcs", "12 pcs", "30 pcs", "64 pcs", "200 g", "800 g"},
		subs: []string{"Diapers:Diapers", "Baby food:Baby Puree", "Formula:Infant Formula", "Wipes:Baby Wipes", "Baby care:Baby Lotion",
			"Feeding bottles:Feeding Bottle", "Teethers:Teether", "Baby bath:Baby Bath", "Baby snacks:Puffs", "Pacifiers:Pacifier"}},
	{name: "Health & beauty", code: "HEA", taxRate: 2000, minCents: 149, maxCents: 2999,
		variants: []string{"Aloe", "Argan", "Citrus", "Lavender", "Mint", "Coconut", "Sensitive", "Men", "Cucumber", "Charcoal"},
		sizes:    []string{"50 ml", "75 ml", "150 ml", "250 ml", "400 ml", "30 pcs"},
		subs: []string{"Shampoo:Shampoo", "Conditioner:Conditioner", "Shower gel:Shower Gel", "Toothpaste:Toothpaste", "Deodorant:Deodorant",
			"Face care:Face Cream", "Sun care:Sunscreen", "Shaving:Razor Blades", "Vitamins:Multivitamin", "First aid:Plasters"}},
	{name: "Household", code: "HOU", taxRate: 2000, minCents: 99, maxCents: 2499,
		variants: []string{"Lemon", "Lavender", "Ocean", "Pine", "Fresh", "Unscented", "Eucalyptus", "Apple", "Spring", "Citrus"},
		sizes:    []string{"500 ml", "750 ml", "1 l", "2 l", "20 pcs", "6 rolls"},
		subs: []string{"Laundry:Detergent", "Dishwashing:Dishwasher Tablets", "Cleaning:Multi-surface Cleaner", "Paper towels:Kitchen Roll",
			"Toilet paper:Toilet Paper", "Bin bags:Bin Bags", "Sponges:Sponges", "Air fresheners:Air Freshener",
			"Fabric softener:Fabric Softener", "Bleach:Bleach"}},
	{name: "Pet", code: "PET", taxRate: 2000, minCents: 149, maxCents: 4999,
		variants: []string{"Chicken", "Beef", "Salmon", "Lamb", "Duck", "Tuna", "Turkey", "Grain-free", "Senior", "Puppy"},
		sizes:    []string{"85 g", "400 g", "1.5 kg", "4 kg", "10 kg", "12 x 85 g"},
		subs: []string{"Dog food:Dog Food", "Cat food:Cat Food", "Cat litter:Cat Litter", "Dog treats:Dog Chews", "Cat treats:Cat Treats",
			"Bird food:Bird Seed", "Fish food:Fish Flakes", "Pet toys:Pet Toy", "Pet care:Pet Shampoo", "Small animals:Hay"}},
	{name: "Electronics", code: "ELE", taxRate: 2000, minCents: 499, maxCents: 19999,
		variants: []string{"Black", "White", "Silver", "Blue", "Graphite", "Rose", "Red", "Green", "Midnight", "Sand"},
		sizes:    []string{"1 pc", "2 pcs", "4 pcs", "1 m", "2 m", "10000 mAh"},
		subs: []string{"Headphones:Headphones", "Chargers:USB-C Charger", "Cables:Cable", "Batteries:AA Batteries", "Power banks:Power Bank",
			"Speakers:Bluetooth Speaker", "Wearables:Smartwatch", "Memory cards:microSD Card", "Keyboards:Keyboard", "Mice:Wireless Mouse"}},
	{name: "Home & kitchen", code: "HOM", taxRate: 2000, minCents: 199, maxCents: 7999,
		variants: []string{"Stone", "White", "Black", "Oak", "Steel", "Copper", "Sage", "Terracotta", "Navy", "Cream"},
		sizes:    []string{"1 pc", "2 pcs", "4 pcs", "6 pcs", "24 cm", "28 cm"},
		subs: []string{"Cookware:Frying Pan", "Knives:Chef Knife", "Storage:Storage Box", "Mugs:Mug", "Glassware:Glasses",
			"Tableware:Plates", "Cutlery:Cutlery Set", "Textiles:Tea Towels", "Candles:Candle", "Utensils:Spatula"}},
	{name: "Garden", code: "GAR", taxRate: 2000, minCents: 149, maxCents: 9999,
		variants: []string{"Green", "Terracotta", "Anthracite", "Natural", "Slate", "Sun", "Shade", "Rose", "Olive", "Classic"},
		sizes:    []string{"1 pc", "3 pcs", "5 l", "20 l", "40 l", "15 m"},
		subs: []string{"Seeds:Seeds", "Pots:Plant Pot", "Soil:Potting Soil", "Fertilizer:Fertilizer", "Hoses:Garden Hose",
			"Gloves:Garden Gloves", "Tools:Trowel", "Outdoor lighting:Solar Light", "Bird care:Bird Feeder", "Plants:Lavender Plant"}},
	{name: "DIY", code: "DIY", taxRate: 2000, minCents: 99, maxCents: 14999,
		variants: []string{"Steel", "Brass", "White", "Black", "Matt", "Gloss", "Heavy-duty", "Compact", "Cordless", "Pro"},
		sizes:    []string{"1 pc", "10 pcs", "100 pcs", "500 ml", "2.5 l", "5 m"},
		subs: []string{"Fixings:Screws", "Power tools:Drill", "Paint:Wall Paint", "Brushes:Paint Brush", "Tape:Duct Tape",
			"Adhesives:Glue", "Lighting:LED Bulb", "Electrical:Extension Lead", "Hooks:Hooks", "Measuring:Tape Measure"}},
	{name: "Stationery", code: "STA", taxRate: 2000, minCents: 49, maxCents: 2999,
		variants: []string{"Blue", "Black", "Red", "Assorted", "Pastel", "Neon", "Recycled", "A4", "A5", "Kraft"},
		sizes:    []string{"1 pc", "3 pcs", "5 pcs", "10 pcs", "80 sheets", "500 sheets"},
		subs: []string{"Notebooks:Notebook", "Pens:Ballpoint Pens", "Pencils:Pencils", "Markers:Markers", "Paper:Copy Paper",
			"Folders:Folder", "Envelopes:Envelopes", "Sticky notes:Sticky Notes", "Scissors:Scissors", "Calculators:Calculator"}},
	{name: "Clothing", code: "CLO", taxRate: 2000, minCents: 499, maxCents: 7999,
		variants: []string{"Black", "White", "Navy", "Grey", "Khaki", "Burgundy", "Denim", "Striped", "Heather", "Olive"},
		sizes:    []string{"XS", "S", "M", "L", "XL", "XXL"},
		subs: []string{"T-shirts:T-shirt", "Socks:Socks", "Underwear:Boxers", "Hoodies:Hoodie", "Jeans:Jeans", "Jackets:Jacket",
			"Caps:Cap", "Scarves:Scarf", "Gloves:Gloves", "Nightwear:Pajamas"}},
	{name: "Toys & games", code: "TOY", taxRate: 2000, minCents: 299, maxCents: 9999,
		variants: []string{"Rainbow", "Jungle", "Space", "Ocean", "Farm", "Dino", "Unicorn", "Racing", "Castle", "Classic"},
		sizes:    []string{"3+ years", "4+ years", "6+ years", "8+ years", "100 pcs", "500 pcs"},
		subs: []string{"Puzzles:Puzzle", "Board games:Board Game", "Building blocks:Building Set", "Dolls:Doll", "Vehicles:Toy Car",
			"Plush toys:Plush Toy", "Card games:Card Game", "Outdoor toys:Water Blaster", "Arts & crafts:Art Set", "Balls:Ball"}},
}

// standardRateSubs are food subcategories taxed at the standard rate (alcohol).
var standardRateSubs = map[string]bool{"Beer": true, "Wine": true, "Spirits": true}

var brands = []string{
	"Alpina", "Bellavista", "Nordfrost", "Casa Verde", "Le Petit Marché", "Vitalis", "Oakridge", "Sunvale",
	"Maison Dorée", "Kronberg", "Blue Harbor", "Terra Nova", "Greenfield", "Polaris", "Mountain Peak", "Golden Mill",
	"Riviera", "Baltic", "Evergreen", "Urban Basics", "Helios", "Brightline", "Fjord", "Sierra",
	"Monarch", "Lumen", "Atlas", "Cedar & Co", "Nova", "Quartz", "Willow", "Zenith",
	"Harvest Moon", "Pure Origin", "Stellar", "Orchard Lane", "Vireo", "Tundra", "Crescent", "Meridian",
}

var foodAdjectives = []string{
	"Organic", "Classic", "Premium", "Light", "Fresh", "Natural", "Original", "Family Size",
	"Rustic", "Artisan", "Traditional", "Gourmet", "Everyday", "Select", "Signature", "Farmhouse",
}

var goodsAdjectives = []string{
	"Classic", "Premium", "Essential", "Pro", "Compact", "Deluxe", "Everyday", "Eco",
	"Signature", "Select", "Ultra", "Smart", "Comfort", "Sport", "Travel", "Heritage",
}

var foodOrigins = []string{"France", "Italy", "Spain", "Germany", "Belgium", "Netherlands", "Portugal", "Poland", "Austria", "Ireland", "Greece", "Denmark"}

var goodsOrigins = []string{"China", "Vietnam", "Germany", "Portugal", "Turkey", "Poland", "Italy", "France"}

var foodSentences = []string{
	"Best enjoyed within three days of opening.", "Store in a cool, dry place.",
	"Made with carefully selected ingredients.", "Keep refrigerated once opened.",
	"A favourite in our shops for years.", "No artificial colours or preservatives.",
	"Sourced from trusted growers.", "Perfect for the whole family.",
}

var goodsSentences = []string{
	"Built to last, with a two-year warranty.", "Easy to clean and maintain.",
	"Designed for everyday use.", "Packaging made from recycled materials.",
	"A reliable choice at a fair price.", "Compact design, easy to store.",
	"Tested for quality and safety.", "Loved by our customers.",
}

// eanPrefixes are GS1 country prefixes the barcodes start with.
var eanPrefixes = []string{"40", "41", "42", "43", "50", "54", "76", "80", "87", "90"}

// category is one "Department/Subcategory" with what its products are called.
type category struct {
	path    string
	noun    string
	nounLow string
	dept    *department
	taxRate int64
}

// categories is the flattened list of the 200 categories, built once.
var categories []category

func init() {
	for d := range departments {
		dept := &departments[d]
		for _, s := range dept.subs {
			sub, noun, ok := strings.Cut(s, ":")
			if !ok {
				panic("cloudsim: subcategory without noun: " + s)
			}
			rate := dept.taxRate
			if standardRateSubs[sub] {
				rate = 2000
			}
			categories = append(categories, category{
				path: dept.name + "/" + sub, noun: noun, nounLow: strings.ToLower(noun), dept: dept, taxRate: rate,
			})
		}
		for _, v := range dept.variants {
			dept.lower = append(dept.lower, strings.ToLower(v))
		}
	}
	// The hot path copies these words between quotes without escaping; make sure it may.
	words := [][]string{brands, foodAdjectives, goodsAdjectives, foodOrigins, goodsOrigins, foodSentences, goodsSentences}
	for _, c := range categories {
		words = append(words, []string{c.path, c.noun, c.dept.code}, c.dept.variants, c.dept.sizes)
	}
	for _, list := range words {
		for _, w := range list {
			if !jsonSafe(w) {
				panic("cloudsim: word list entry needs JSON escaping: " + w)
			}
		}
	}
}

// Stream tags keep the pseudo-random streams of different facts independent.
const (
	tagProduct uint64 = iota + 1
	tagName
	tagPrice
	tagPriceChange
	tagPromo
	tagStock
	tagMedia
	tagCorrupt
	tagMutation
	tagTick
	tagFaults
	tagBlob
)

// splitmix64 is a fast, well-mixed 64-bit hash step.
func splitmix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	return x ^ x>>31
}

// itemRand is a tiny deterministic generator seeded from (seed, tag, index, version).
type itemRand struct{ s uint64 }

func newItemRand(seed, tag uint64, idx int, ver uint32) itemRand {
	h := splitmix64(seed ^ tag*0x632BE59BD9B4E019)
	h = splitmix64(h ^ uint64(idx))
	h = splitmix64(h ^ uint64(ver)<<32)
	return itemRand{s: h}
}

func (r *itemRand) next() uint64 {
	r.s += 0x9E3779B97F4A7C15
	z := r.s
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

func (r *itemRand) intn(n int) int { return int(r.next() % uint64(n)) }

func pick[T any](r *itemRand, list []T) T { return list[r.intn(len(list))] }

// catalog generates documents. It is immutable after construction and safe for concurrent use.
type catalog struct {
	seed     uint64
	settings []setting // sorted by key
	blobs    *blobSums // MD5s of the generated blobs; nil: manifests carry made-up MD5s
}

type setting struct {
	key string
	doc []byte
}

// productFacts are the parts of a product that never change: a rename changes only the
// adjective, the variant and the description's closing sentence.
type productFacts struct {
	cat       *category
	brand     string
	size      string
	origin    string
	barcodes  int
	prefixes  [2]string
	hasOrigin bool
}

func (c *catalog) facts(idx int) productFacts {
	r := newItemRand(c.seed, tagProduct, idx, 0)
	f := productFacts{cat: &categories[r.intn(len(categories))]}
	f.brand = pick(&r, brands)
	f.size = pick(&r, f.cat.dept.sizes)
	if f.cat.dept.food {
		f.origin = pick(&r, foodOrigins)
	} else {
		f.origin = pick(&r, goodsOrigins)
	}
	f.hasOrigin = r.intn(10) < 8
	f.barcodes = 1
	if r.intn(10) < 3 {
		f.barcodes = 2
	}
	f.prefixes = [2]string{pick(&r, eanPrefixes), pick(&r, eanPrefixes)}
	return f
}

// appendProduct appends the document of product idx at version ver.
func (c *catalog) appendProduct(b []byte, idx int, ver uint32) []byte {
	f := c.facts(idx)
	dept := f.cat.dept
	r := newItemRand(c.seed, tagName, idx, ver)
	adjectives, sentences := goodsAdjectives, goodsSentences
	if dept.food {
		adjectives, sentences = foodAdjectives, foodSentences
	}
	adj := pick(&r, adjectives)
	vi := r.intn(len(dept.variants))
	variant := dept.variants[vi]
	sentence := pick(&r, sentences)

	b = append(b, `{"id":"`...)
	b = appendItemID(b, 'P', idx)
	b = append(b, `","sku":"`...)
	b = append(b, dept.code...)
	b = append(b, '-')
	b = appendPadded(b, uint64(idx)+1, idDigits)
	b = append(b, `","name":"`...)
	b = append(b, f.brand...)
	b = append(b, ' ')
	b = append(b, adj...)
	b = append(b, ' ')
	b = append(b, variant...)
	b = append(b, ' ')
	b = append(b, f.cat.noun...)
	b = append(b, ' ')
	b = append(b, f.size...)
	b = append(b, `","description":"`...)
	b = append(b, f.cat.noun...)
	b = append(b, " by "...)
	b = append(b, f.brand...)
	b = append(b, ", "...)
	b = append(b, dept.lower[vi]...)
	b = append(b, " ("...)
	b = append(b, f.size...)
	b = append(b, "). "...)
	b = append(b, sentence...)
	b = append(b, `","brand":"`...)
	b = append(b, f.brand...)
	b = append(b, `","category":"`...)
	b = append(b, f.cat.path...)
	b = append(b, `","barcodes":[`...)
	for k := range f.barcodes {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = c.appendEAN(b, uint64(idx)*2+uint64(k), f.prefixes[k])
		b = append(b, '"')
	}
	b = append(b, `],"media":["`...)
	b = appendItemID(b, 'M', idx/productsPerMedia)
	// Attributes in key order, as encoding/json would write a map.
	b = append(b, `"],"attributes":{`...)
	if dept.food {
		b = append(b, `"flavour":"`...)
	} else {
		b = append(b, `"color":"`...)
	}
	b = append(b, variant...)
	b = append(b, '"')
	if adj == "Organic" {
		b = append(b, `,"organic":"yes"`...)
	}
	if f.hasOrigin {
		b = append(b, `,"origin":"`...)
		b = append(b, f.origin...)
		b = append(b, '"')
	}
	b = append(b, `,"size":"`...)
	b = append(b, f.size...)
	return append(b, `"}}`...)
}

// appendEAN appends a valid EAN-13. The ten digits after the prefix are an affine bijection of
// v modulo 10^10 (the multiplier is coprime with 10), so distinct v give distinct barcodes
// whatever the prefix. v is below 2*10^7 (two per product id), so the product cannot overflow.
func (c *catalog) appendEAN(b []byte, v uint64, prefix string) []byte {
	const mod = 10_000_000_000
	body := (v*2654435761 + splitmix64(c.seed)%mod) % mod
	var d [13]byte
	copy(d[:2], prefix)
	for i := 11; i >= 2; i-- {
		d[i] = byte('0' + body%10)
		body /= 10
	}
	d[12] = eanCheckDigit(d[:12])
	return append(b, d[:]...)
}

// eanCheckDigit returns the GS1 check digit of the first 12 digits of an EAN-13.
func eanCheckDigit(digits []byte) byte {
	sum := 0
	for i, ch := range digits {
		n := int(ch - '0')
		if i%2 == 1 {
			n *= 3
		}
		sum += n
	}
	return byte('0' + (10-sum%10)%10)
}

// roundPrice makes a price end in 9 cents, as shop prices do.
func roundPrice(cents int64) int64 { return max(cents/10*10+9, 9) }

// appendPrice appends the price document of product idx at version ver.
func (c *catalog) appendPrice(b []byte, idx int, ver uint32) []byte {
	cat := c.facts(idx).cat
	dept := cat.dept
	r := newItemRand(c.seed, tagPrice, idx, 0)
	u := int64(r.intn(1000))
	// Quadratic skew: most prices sit near the bottom of the department's range.
	amount := dept.minCents + (dept.maxCents-dept.minCents)*u*u/1_000_000
	if ver > 0 {
		rv := newItemRand(c.seed, tagPriceChange, idx, ver)
		amount = amount * int64(850+rv.intn(301)) / 1000
	}
	amount = roundPrice(amount)
	var list int64
	if rp := newItemRand(c.seed, tagPromo, idx, ver); rp.intn(100) < 15 {
		list = roundPrice(amount * int64(1100+rp.intn(401)) / 1000)
		if list <= amount {
			list = amount + 10
		}
	}
	b = append(b, `{"product_id":"`...)
	b = appendItemID(b, 'P', idx)
	b = append(b, `","currency":"EUR","amount":`...)
	b = appendInt(b, amount)
	if list > 0 {
		b = append(b, `,"list_amount":`...)
		b = appendInt(b, list)
	}
	b = append(b, `,"tax_rate":`...)
	b = appendInt(b, cat.taxRate)
	return append(b, '}')
}

// stockEpoch is the updated_at of the initial stock levels; each stock change moves it on by an
// hour, so the time is a function of the version and the catalog stays deterministic.
var stockEpoch = time.Date(2026, 1, 5, 7, 0, 0, 0, time.UTC).Unix()

// appendStock appends the stock document of product idx at version ver.
func (c *catalog) appendStock(b []byte, idx int, ver uint32) []byte {
	r := newItemRand(c.seed, tagStock, idx, ver)
	var qty, reserved int64
	if r.intn(100) >= 8 {
		u := int64(r.intn(1000))
		qty = 1 + u*u/4000
		if r.intn(100) < 20 {
			reserved = 1 + int64(r.intn(int(min(qty, 3))))
		}
	}
	at := stockEpoch + int64(ver)*3600 + int64(r.intn(3600))
	b = append(b, `{"product_id":"`...)
	b = appendItemID(b, 'P', idx)
	b = append(b, `","quantity":`...)
	b = appendInt(b, qty)
	if reserved > 0 {
		b = append(b, `,"reserved":`...)
		b = appendInt(b, reserved)
	}
	b = append(b, `,"updated_at":"`...)
	b = time.Unix(at, 0).UTC().AppendFormat(b, time.RFC3339)
	return append(b, `"}`...)
}

// productsPerMedia is how many consecutive products share one media manifest.
const productsPerMedia = 4

// appendMedia appends the manifest of media idx at version ver. With blobs on, the md5 is the
// real MD5 of the blob's generated content (see blob.go); otherwise it is derived from the same
// generator as the size, so a manifest's size and md5 always change together, and is not the MD5
// of any real content.
func (c *catalog) appendMedia(b []byte, idx int, ver uint32) []byte {
	spec := c.mediaSpec(idx, ver)
	var sum [16]byte
	if c.blobs != nil {
		sum = c.blobs.sum(c.seed, spec)
	} else {
		r := newItemRand(c.seed, tagMedia^0xff, idx, ver)
		for i := range 2 {
			x := r.next()
			for j := range 8 {
				sum[i*8+j] = byte(x >> (8 * j))
			}
		}
	}
	b = append(b, `{"id":"`...)
	b = appendItemID(b, 'M', idx)
	b = append(b, `","blob":"`...)
	b = append(b, spec.name...)
	b = append(b, `","size":`...)
	b = appendInt(b, spec.size)
	b = append(b, `,"md5":"`...)
	b = base64.StdEncoding.AppendEncode(b, sum[:])
	b = append(b, `","content_type":"`...)
	b = append(b, spec.contentType...)
	return append(b, `"}`...)
}

// newSettings builds the store settings, sorted by key so that lexical order is index order.
func newSettings(storeID, storeName string) []setting {
	values := map[string]any{
		"currency":         "EUR",
		"language":         "fr-FR",
		"timezone":         "Europe/Paris",
		"store_id":         storeID,
		"store_name":       storeName,
		"tax_included":     true,
		"loyalty_enabled":  true,
		"max_basket_items": 200,
		"order_prefix":     strings.ToUpper(storeID) + "-",
		"receipt_footer":   "Merci de votre visite ! Thank you for shopping with us.",
		"opening_hours": map[string]string{
			"mon": "08:30-20:00", "tue": "08:30-20:00", "wed": "08:30-20:00", "thu": "08:30-20:00",
			"fri": "08:30-21:00", "sat": "09:00-21:00", "sun": "closed",
		},
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]setting, 0, len(keys))
	for _, k := range keys {
		v, err := json.Marshal(values[k])
		if err != nil {
			panic(fmt.Sprintf("cloudsim: setting %s: %v", k, err)) // static values: cannot happen
		}
		doc := jsonenc.AppendString([]byte(`{"key":`), k)
		doc = append(doc, `,"value":`...)
		doc = append(doc, v...)
		doc = append(doc, '}')
		out = append(out, setting{key: k, doc: doc})
	}
	return out
}
