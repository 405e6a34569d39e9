// An upstream Go service publishing orders the way Go services do: a struct
// with a time.Time, encoding/json, and nats.go's JetStream publish (with its
// ack). Its schema grew two fields the order service does not know
// (Priority, and each item's Colour), as upstream schemas do.
//
// time.Time marshals as RFC 3339 with nanoseconds (trailing zeros dropped)
// in the process's local zone: `Z` under TZ=UTC, `+05:30` under
// TZ=Asia/Kolkata.
//
// Built in GOPATH mode against Debian's golang-github-nats-io-go-nats-dev:
//
//	GO111MODULE=off GOPATH=$tmp:/usr/share/gocode go build -o $tmp/producer .
//	$tmp/producer NATS_URL SUBJECT UID_PREFIX COUNT
//
// Prints every payload it published, one a line, once JetStream acked it.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

type Delivery struct {
	Name    string `json:"name"`
	Phone   string `json:"phone"`
	Zip     string `json:"zip"`
	City    string `json:"city"`
	Address string `json:"address"`
	Region  string `json:"region"`
	Email   string `json:"email"`
}

type Payment struct {
	Transaction  string `json:"transaction"`
	RequestID    string `json:"request_id"`
	Currency     string `json:"currency"`
	Provider     string `json:"provider"`
	Amount       int64  `json:"amount"`
	PaymentDt    int64  `json:"payment_dt"`
	Bank         string `json:"bank"`
	DeliveryCost int64  `json:"delivery_cost"`
	GoodsTotal   int64  `json:"goods_total"`
	CustomFee    int64  `json:"custom_fee"`
}

type Item struct {
	ChrtID      int64  `json:"chrt_id"`
	TrackNumber string `json:"track_number"`
	Price       int64  `json:"price"`
	Rid         string `json:"rid"`
	Name        string `json:"name"`
	Sale        int64  `json:"sale"`
	Size        string `json:"size"`
	TotalPrice  int64  `json:"total_price"`
	NmID        int64  `json:"nm_id"`
	Brand       string `json:"brand"`
	Status      int64  `json:"status"`
	Colour      string `json:"colour"`
}

type Order struct {
	OrderUID          string    `json:"order_uid"`
	TrackNumber       string    `json:"track_number"`
	Entry             string    `json:"entry"`
	Delivery          Delivery  `json:"delivery"`
	Payment           Payment   `json:"payment"`
	Items             []Item    `json:"items"`
	Locale            string    `json:"locale"`
	InternalSignature string    `json:"internal_signature"`
	CustomerID        string    `json:"customer_id"`
	DeliveryService   string    `json:"delivery_service"`
	Shardkey          string    `json:"shardkey"`
	SmID              int64     `json:"sm_id"`
	DateCreated       time.Time `json:"date_created"`
	OofShard          string    `json:"oof_shard"`
	Priority          int       `json:"priority"`
}

func newOrder(uid string, n int) Order {
	return Order{
		OrderUID:    uid,
		TrackNumber: "WBILMTESTTRACK",
		Entry:       "WBIL",
		Delivery: Delivery{
			Name:    "Test Testov",
			Phone:   "+9720000000",
			Zip:     "2639809",
			City:    "Kiryat Mozkin",
			Address: "Ploshad Mira 15",
			Region:  "Kraiot",
			Email:   "test@gmail.com",
		},
		Payment: Payment{
			Transaction:  uid,
			Currency:     "USD",
			Provider:     "wbpay",
			Amount:       1817,
			PaymentDt:    1637907727,
			Bank:         "alpha",
			DeliveryCost: 1500,
			GoodsTotal:   317,
		},
		Items: []Item{{
			ChrtID:      9934930,
			TrackNumber: "WBILMTESTTRACK",
			Price:       453,
			Rid:         "ab4219087a764ae0btest",
			Name:        "Mascaras",
			Sale:        30,
			Size:        "0",
			TotalPrice:  317,
			NmID:        2389212,
			Brand:       "Vivienne Sabo",
			Status:      202,
			Colour:      "black",
		}},
		Locale:          "en",
		CustomerID:      "test",
		DeliveryService: "meest",
		Shardkey:        "9",
		SmID:            99,
		DateCreated:     time.Now(),
		OofShard:        "1",
		Priority:        n%3 + 1,
	}
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "go producer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("usage: producer NATS_URL SUBJECT UID_PREFIX COUNT")
	}
	url, subject, prefix := args[0], args[1], args[2]
	count, err := strconv.Atoi(args[3])
	if err != nil {
		return fmt.Errorf("COUNT: %w", err)
	}
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.MaxWait(10 * time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	for i := 0; i < count; i++ {
		payload, err := json.Marshal(newOrder(fmt.Sprintf("%s-%d", prefix, i), i))
		if err != nil {
			return fmt.Errorf("marshal: %w", err)
		}
		if _, err := js.Publish(subject, payload); err != nil {
			return fmt.Errorf("publish order %d: %w", i, err)
		}
		fmt.Println(string(payload))
	}
	return nil
}
